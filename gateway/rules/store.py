"""The one interface between the rule engine (rules.py, alerts.py) and its store.

The engine runs over two stores: SQLite at a gateway, PostgreSQL at the hub
(gateway/hub/rules_store.py). Everything it reads or writes goes through
the named queries of EngineStore below: devices, readings in a window and
the newest readings, rules and their state, alerts and their events, and
the outbox. Nothing else of a store is the engine's business, so a third
store is one subclass, not a fork of rules.py. The operator's `huaico
rules` and `huaico alerts` commands use the same store (their own few
queries are at the end), so `--hub` runs them on the city's PostgreSQL.

Every method runs on the caller's connection inside the caller's
transaction and never commits: the writer (gateway/store/writer.py) or the hub
worker (gateway/hub/store.py with gateway/hub/rules.py) commits the readings, the alerts they raised
and the messages to send together, or none of them.

The queries are written once, with `?` placeholders, in the SQL both
engines speak; a subclass says how to run one (`_rows`, `_insert`) and
overrides the few that differ (SQLite orders equal reading times by rowid,
the hub by sequence number).
"""
import json


class EngineStore:
    """What the engine needs of a store; SqliteEngineStore is the reference."""

    # Readings of one (device, channel, index) with equal times: in the order
    # they arrived.
    ARRIVAL = "rowid"

    # -- plumbing a subclass provides ------------------------------------------

    def _rows(self, sql, args=()):
        """All rows of `sql` (with `?` placeholders) as tuples."""
        raise NotImplementedError

    def _dicts(self, sql, args=()):
        """All rows of `sql` as dicts by column name."""
        raise NotImplementedError

    def _insert(self, sql, args):
        """Run an INSERT; the new row's id."""
        raise NotImplementedError

    def _run(self, sql, args=()):
        """Run a statement; the number of rows it changed."""
        raise NotImplementedError

    def _add(self, table, fields):
        """Insert a row {column: value}; its id."""
        return self._insert("INSERT INTO %s (%s) VALUES (%s)" % (
            table, ", ".join(fields), ", ".join("?" * len(fields))), list(fields.values()))

    def _one(self, sql, args=()):
        rows = self._rows(sql, args)
        return rows[0] if rows else None

    def _row_where(self, table, column, value):
        """The row of `table` whose `column` is `value`, as a dict, or None."""
        rows = self._dicts("SELECT * FROM %s WHERE %s = ?" % (table, column), [value])
        return rows[0] if rows else None

    def _change(self, table, row_id, fields):
        """Set `fields` {column: value} on the row of `table` with id `row_id`."""
        self._run("UPDATE %s SET %s WHERE id = ?" % (table, ", ".join("%s = ?" % name
                                                                     for name in fields)),
                  list(fields.values()) + [row_id])

    # -- devices -----------------------------------------------------------------

    def devices(self, active=True):
        """Devices as dicts (id, name, site, place, lat, lon, retired, last_seen,
        created ...), by id; active: not retired."""
        return self._dicts("SELECT * FROM devices_live%s ORDER BY id"
                           % (" WHERE NOT retired" if active else ""))

    def device(self, device_id):
        return self._row_where("devices_live", "id", device_id)

    # -- readings ----------------------------------------------------------------

    @staticmethod
    def _quality(kind):
        # A quality rule sees every reading as flagged (1) or not (0); the
        # others only readings whose quality is ok.
        if kind == "quality":
            return "(quality != 0)", ""
        return "value", " AND quality = 0"

    def newest_time(self, device_ids, channel, idx, kind=None):
        """The newest reading time of the channel among the devices, or None."""
        if not device_ids:
            return None
        _, quality = self._quality(kind)
        row = self._one("SELECT max(time) FROM readings WHERE device_id IN (%s) AND "
                        "channel = ? AND idx = ?%s" % (",".join("?" * len(device_ids)), quality),
                        list(device_ids) + [channel, idx])
        return row[0] if row else None

    def readings_after(self, device_id, channel, idx, after, kind=None):
        """[(time, value)] of one channel newer than `after`, in time order
        (equal times in arrival order); value is the flag for quality rules."""
        value, quality = self._quality(kind)
        return [(t, int(v)) for t, v in self._rows(
            "SELECT time, %s FROM readings WHERE device_id = ? AND channel = ? AND idx = ?%s "
            "AND time > ? ORDER BY time, %s" % (value, quality, self.ARRIVAL),
            [device_id, channel, idx, after])]

    def newest_readings(self, device_id, channel, idx, count, kind=None):
        """The `count` newest [(time, value)] of one channel, oldest first."""
        value, quality = self._quality(kind)
        rows = self._rows(
            "SELECT time, %s FROM readings WHERE device_id = ? AND channel = ? AND idx = ?%s "
            "ORDER BY time DESC, %s DESC LIMIT ?" % (value, quality, self.ARRIVAL),
            [device_id, channel, idx, count])
        rows.reverse()
        return [(t, int(v)) for t, v in rows]

    def gauge_readings(self, device_ids, channel, idx, after, before=None):
        """[(device id, time, value, ok)] of several gauges in (after, before),
        in time order: a basin's history."""
        if not device_ids:
            return []
        args = list(device_ids) + [channel, idx, after]
        until = ""
        if before is not None:
            until = " AND time < ?"
            args.append(before)
        return [(d, t, int(v), bool(ok)) for d, t, v, ok in self._rows(
            "SELECT device_id, time, value, quality = 0 FROM readings WHERE device_id IN (%s) "
            "AND channel = ? AND idx = ? AND time > ?%s ORDER BY time, %s"
            % (",".join("?" * len(device_ids)), until, self.ARRIVAL), args)]

    def readings_between(self, device_id, channel, idx, after, before, kind=None):
        """[(index, time, value)] of one device's channel (any index when idx
        is None) in (after, before), in time order: what replay reads."""
        value, quality = self._quality(kind)
        args = [device_id, channel]
        extra = ""
        if idx is not None:
            extra = " AND idx = ?"
            args.append(idx)
        return [(i, t, int(v)) for i, t, v in self._rows(
            "SELECT idx, time, %s FROM readings WHERE device_id = ? AND channel = ?%s%s "
            "AND time > ? AND time < ? ORDER BY time, %s"
            % (value, extra, quality, self.ARRIVAL), args + [after, before])]

    # -- rules and their state ---------------------------------------------------

    def rules_stamp(self):
        """Changes whenever a rule is added, changed or removed."""
        return tuple(self._one("SELECT count(*), max(updated), max(id) FROM rules"))

    def enabled_rules(self):
        return self._dicts("SELECT * FROM rules WHERE enabled = 1 ORDER BY id")

    def rule_place(self, rule_id):
        """(window_s, site) of a rule, or None once it is gone."""
        return self._one("SELECT window_s, site FROM rules WHERE id = ?", [rule_id])

    def state(self, rule_id, subject, idx):
        """(level, {level index: since}, alert id) of a tracker, or None."""
        row = self._one("SELECT level, since, alert_id FROM alert_state WHERE rule_id = ? "
                        "AND device_id = ? AND idx = ?", [rule_id, subject, idx])
        if row is None:
            return None
        return row[0], {int(k): v for k, v in json.loads(row[1]).items()}, row[2]

    def timers(self):
        """(rule id, subject, index, level, {level index: since}) of the
        trackers with a minimum-duration clock running or met."""
        return [(rule_id, subject, idx, level, {int(k): v for k, v in json.loads(since).items()})
                for rule_id, subject, idx, level, since in self._rows(
                    "SELECT rule_id, device_id, idx, level, since FROM alert_state "
                    "WHERE since != '{}'")]

    def save_state(self, rule_id, subject, idx, level, alert_id, since, value, last_time, now):
        self._run(
            "INSERT INTO alert_state (rule_id, device_id, idx, level, alert_id, since, value, "
            "last_time, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(rule_id, device_id, idx) DO UPDATE SET level = excluded.level, "
            "alert_id = excluded.alert_id, since = excluded.since, value = excluded.value, "
            "last_time = excluded.last_time, updated = excluded.updated",
            [rule_id, subject, idx, level, alert_id, json.dumps(since), value, last_time, now])

    # -- alerts and their events -------------------------------------------------

    def alert(self, alert_id):
        return self._row_where("alerts", "id", alert_id)

    def add_alert(self, fields):
        return self._add("alerts", fields)

    def change_alert(self, alert_id, fields):
        self._change("alerts", alert_id, fields)

    def escalation_due(self, before):
        """Ids of active, unacknowledged alerts last escalated (or raised) by `before`."""
        return [row[0] for row in self._rows(
            "SELECT id FROM alerts WHERE status = 'active' AND acked IS NULL "
            "AND coalesce(escalated, raised) <= ? ORDER BY id", [before])]

    def events(self, alert_id):
        """The alert's CAP events as dicts, oldest first."""
        return self._dicts("SELECT * FROM alert_events WHERE alert_id = ? ORDER BY id",
                           [alert_id])

    def add_event(self, fields):
        return self._add("alert_events", fields)

    # -- outbox ------------------------------------------------------------------

    def groups_reached(self, alert_id):
        """The groups that have had an SMS of the alert."""
        return {row[0] for row in self._rows(
            "SELECT DISTINCT grp FROM outbox WHERE alert_id = ? AND transport = 'sms'",
            [alert_id])}

    def messages_to(self, alert_id, recipient):
        """(id, status, kind, level, sent, copies) of the alert's SMS to a number."""
        return self._rows("SELECT id, status, kind, level, sent, copies FROM outbox "
                          "WHERE alert_id = ? AND recipient = ? AND transport = 'sms' "
                          "ORDER BY id", [alert_id, recipient])

    def supersede(self, outbox_ids):
        """Messages not begun that a newer state of their alert replaces."""
        self._run("UPDATE outbox SET status = 'superseded', hold = '', last_error = "
                  "'newer state queued' WHERE id IN (%s)" % ",".join("?" * len(outbox_ids)),
                  list(outbox_ids))

    def queue(self, fields):
        """A new outbox row; its id."""
        return self._add("outbox", fields)

    # -- the dispatchers' (gateway/alerts/policy.py, acks.py) -------------------

    def sms_sent_since(self, recipient, since):
        """How many SMS went to a number after `since` (the rate limit)."""
        return self._one("SELECT count(*) FROM outbox WHERE transport = 'sms' AND "
                         "recipient = ? AND status = 'sent' AND sent > ?",
                         [recipient, since])[0]

    def incoming_seen(self, sms_key):
        """Whether a received SMS with this key is recorded already."""
        return self._one("SELECT 1 FROM incoming WHERE sms_key = ?", [sms_key]) is not None

    def add_incoming(self, fields):
        """Record a received SMS {column: value}; its id."""
        return self._add("incoming", fields)

    def reported_message(self, ref):
        """The outbox id of the sent SMS a delivery report's reference names:
        TP-MR wraps at 256, so the newest sent row holding it."""
        row = self._one("SELECT id FROM outbox WHERE transport = 'sms' AND status = 'sent' "
                        "AND refs LIKE ? ORDER BY sent DESC LIMIT 1", ['%%"%s"%%' % ref])
        return row[0] if row else None

    def log_delivery(self, fields):
        """A delivery_log line {column: value}."""
        return self._add("delivery_log", fields)

    # -- the operator's commands (gateway/cli/alerts.py) -------------------------

    def all_rules(self):
        """Every rule as a dict, by name (in byte order at the hub too:
        gateway/hub/schema.py, m004)."""
        return self._dicts("SELECT * FROM rules ORDER BY name")

    def rule_named(self, name):
        return self._row_where("rules", "name", name)

    def add_rule(self, row):
        return self._add("rules", row)

    def change_rule(self, rule_id, row):
        self._change("rules", rule_id, row)

    def remove_rule(self, rule_id):
        """Delete a rule and its state; its active alerts end as cancelled
        (no all-clear goes out for them)."""
        self._run("UPDATE alerts SET status = 'cancelled' WHERE rule_id = ? AND status = "
                  "'active'", [rule_id])
        self._run("DELETE FROM alert_state WHERE rule_id = ?", [rule_id])
        self._run("DELETE FROM rules WHERE id = ?", [rule_id])

    def rule_states(self, rule_id):
        """(device id, index, level, value, updated) of each of a rule's
        trackers. Ordered: PostgreSQL returns updated rows in no fixed order."""
        return self._rows("SELECT device_id, idx, level, value, updated FROM alert_state "
                          "WHERE rule_id = ? ORDER BY device_id, idx", [rule_id])

    def active_alerts(self, rule_id):
        return self._one("SELECT count(*) FROM alerts WHERE rule_id = ? AND status = 'active'",
                         [rule_id])[0]

    def recent_alerts(self, limit, active_only):
        """The newest `limit` alerts (active ones only, or any), newest first."""
        return self._dicts(
            "SELECT id, status, level, place, rule_name, value, unit, raised, cleared, acked_by "
            "FROM alerts %s ORDER BY id DESC LIMIT ?"
            % ("WHERE status = 'active'" if active_only else ""), [limit])

    def failed_messages(self):
        return self._one("SELECT count(*) FROM outbox WHERE status = 'failed'")[0]

    def messages(self, alert_id):
        """(id, transport, recipient, status, attempts, last error, body) of
        an alert's messages."""
        return self._rows("SELECT id, transport, recipient, status, attempts, last_error, body "
                          "FROM outbox WHERE alert_id = ? ORDER BY id", [alert_id])

    def replies(self, alert_id):
        """(time, number, text, action, detail) of the SMS replies that named
        the alert (gateway/alerts/acks.py), oldest first."""
        return self._rows("SELECT time, number, text, action, detail FROM incoming "
                          "WHERE alert_id = ? ORDER BY id", [alert_id])

    def message_states(self, outbox_ids):
        """(recipient, status, last error) of these outbox rows, by id."""
        return self._rows("SELECT recipient, status, last_error FROM outbox WHERE id IN (%s) "
                          "ORDER BY id" % ",".join("?" * len(outbox_ids)), list(outbox_ids))


class SqliteEngineStore(EngineStore):
    """The gateway's store: a sqlite3 connection (or a sqlite_utils Database)."""

    def __init__(self, conn):
        self.conn = getattr(conn, "conn", conn)

    def _rows(self, sql, args=()):
        return self.conn.execute(sql, args).fetchall()

    def _dicts(self, sql, args=()):
        cursor = self.conn.execute(sql, args)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def _insert(self, sql, args):
        return self.conn.execute(sql, args).lastrowid

    def _run(self, sql, args=()):
        return self.conn.execute(sql, args).rowcount

    def devices(self, active=True):
        # SQLite stores retired as 0/1.
        return self._dicts("SELECT * FROM devices_live%s ORDER BY id"
                           % (" WHERE retired = 0" if active else ""))


def of(conn):
    """The EngineStore for what a caller holds: a store as it is, else a
    SQLite connection or Database (the gateway's callers)."""
    if isinstance(conn, EngineStore):
        return conn
    return SqliteEngineStore(conn)
