"""The gateway's SQLite database: the single writer that commits frames
before acking them, the migrations, the queries operators run on readings,
and what keeps the data for years (retention, backup, the disk estimate).

The hub's PostgreSQL store is `huaico.hub`, not here.
"""
