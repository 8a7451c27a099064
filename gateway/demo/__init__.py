"""`huaico demo`: the whole chain on one machine from a scenario file
(scenarios/*.toml): boards under MicroPython, the gateway, the modem emulator.
"""
