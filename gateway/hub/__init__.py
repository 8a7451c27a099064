"""The city tier: the gateway's forwarder of committed frames upstream, and
`huaico hub`'s workers that verify them, store them once in PostgreSQL, run
the gateway's rule engine over every gateway's readings and send each
message once; with the hub's schema and the device keys provisioned there.
"""
