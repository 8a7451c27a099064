"""The huaico board firmware: sample sensors, keep every frame in flash, send it until the gateway acks it."""
