"""The operator's read commands over the hub's PostgreSQL.

`huaico status | readings | plot | device list | device show` are written
once, over the read side of a gateway's database: `query(sql, params)`
giving rows as dicts, `execute(sql, params)` giving a cursor of tuples, and
`table_names()` (the part of sqlite_utils.Database that huaico.ops.status,
huaico.store.readings and huaico.devices.registry read through). HubDatabase is
that interface over a psycopg connection, so `--hub DSN` (or `[hub] dsn`)
points the same commands, the same SQL and the same output code at the
city's database. The SQL they send is written to mean the same in SQLite
and PostgreSQL (no SQLite bare columns beside an aggregate); `?`
placeholders become psycopg's `%s` here, and booleans SQLite's 0 and 1.

The connection is read-only and autocommits: a read command holds no
transaction open against the workers' writes.
"""


class HubReadError(RuntimeError):
    """The hub's database cannot be read (no psycopg, no connection, no schema)."""


def _placeholders(sql):
    # The commands' SQL has no `?` or `%` inside string literals.
    return sql.replace("%", "%%").replace("?", "%s")


class HubDatabase:
    """The read side of sqlite_utils.Database over the hub's PostgreSQL."""

    def __init__(self, conn):
        self.conn = conn

    def execute(self, sql, params=()):
        import psycopg
        try:
            return self.conn.execute(_placeholders(sql), list(params))
        except psycopg.Error as exc:
            raise HubReadError("hub database error: %s" % exc) from None

    def query(self, sql, params=()):
        import psycopg
        from psycopg.rows import dict_row
        with self.conn.cursor(row_factory=dict_row) as cur:
            try:
                cur.execute(_placeholders(sql), list(params))
            except psycopg.Error as exc:
                raise HubReadError("hub database error: %s" % exc) from None
            for row in cur:
                # Rows as SQLite gives them: booleans are 0 and 1 there, and
                # `--json` must print the same at the edge and at the hub.
                yield {k: int(v) if isinstance(v, bool) else v for k, v in row.items()}

    def table_names(self):
        rows = self.conn.execute("SELECT table_name FROM information_schema.tables "
                                 "WHERE table_schema = current_schema()")
        return [name for (name,) in rows]

    def close(self):
        self.conn.close()


def open_hub(dsn):
    """A HubDatabase on `dsn`; HubReadError naming what is wrong."""
    try:
        import psycopg
    except ImportError:
        raise HubReadError("reading the hub needs psycopg: pip install 'huaico[hub]'") from None
    try:
        conn = psycopg.connect(dsn, autocommit=True)
    except psycopg.Error as exc:
        raise HubReadError("cannot connect to the hub's PostgreSQL: %s" % exc) from None
    # Read-only for every statement: autocommit starts no transaction that
    # psycopg's read_only attribute could mark.
    conn.execute("SET default_transaction_read_only = on")
    database = HubDatabase(conn)
    if "readings" not in database.table_names():
        conn.close()
        raise HubReadError("the hub's database has no huaico schema: run `huaico hub init`")
    return database
