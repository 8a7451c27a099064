"""The rule engine: readings in, alert levels out, inside the writer's
transaction, through one narrow interface to its store (store.py; SQLite at
a gateway, PostgreSQL at the hub); basin rules over several gauges,
rainfall-threshold curves, and replaying a rule over stored readings.
"""
