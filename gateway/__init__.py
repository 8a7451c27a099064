"""The huaico gateway: ingest, store, rules and alerts on a Raspberry Pi."""
