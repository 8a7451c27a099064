"""The rule engine's store at the hub: huaico.rules.store.EngineStore over PostgreSQL.

The engine's queries are engine_store's, run through psycopg on the
hub worker's cursor inside the worker's transaction (gateway/hub/rules.py
holds the engine's lock around it). Only how a query runs differs:
placeholders are %s, a new row's id comes back through RETURNING, and
readings of one channel with equal times are ordered by the frame's
sequence number (the hub has no rowid; a board numbers its frames in the
order it made them, which is the order a gateway would have seen).
"""
import re

from huaico.rules.store import EngineStore

_PLACEHOLDER = re.compile(r"\?")


def _pg(sql):
    return _PLACEHOLDER.sub("%s", sql)


class PgEngineStore(EngineStore):
    """The engine's queries on a psycopg cursor (or connection)."""

    ARRIVAL = "seq"

    def __init__(self, cur):
        self.cur = cur
        self.saved = set()  # the subjects whose alert_state this store wrote

    def save_state(self, rule_id, subject, idx, *state):
        EngineStore.save_state(self, rule_id, subject, idx, *state)
        self.saved.add(subject)

    def _execute(self, sql, args):
        # Rules and alerts are text where SQLite has its loose types; a psycopg
        # cursor returns what the schema says (gateway/hub/alert_schema.py).
        return self.cur.execute(_pg(sql), args)

    def _rows(self, sql, args=()):
        return self._execute(sql, args).fetchall()

    def _dicts(self, sql, args=()):
        cursor = self._execute(sql, args)
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def _insert(self, sql, args):
        return self._execute(sql + " RETURNING id", args).fetchone()[0]

    def _run(self, sql, args=()):
        return self._execute(sql, args).rowcount
