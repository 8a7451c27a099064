"""The hub's alerting tables in PostgreSQL: the gateway's (gateway/alerts/schema.py), once for the city.

The rule engine and alert lifecycle are the gateway's own (rules.py,
alerts.py through gateway/hub/rules_store.py), so these tables have the
gateway's columns, in PostgreSQL's types: times are seconds since 1970
(double precision, bigint for reading times as in readings), `since`,
`levels`, `params`, `refs` and `parts` are JSON text as at the edge.

engine_seq and engine_held put each device's frames in order for the
rules (see gateway/hub/rules.py). engine_runs holds one counter that every
evaluation under the engine's lock moves, and engine_changed (hub/schema.py
m007) the subjects each evaluation moved: a worker whose in-memory windows
were built before another worker's evaluation sees the counter moved and
rebuilds only those subjects' trackers from these tables and the readings.
"""


def m003_alerting(cur, timescale, now):
    cur.execute("""
        CREATE TABLE rules (
            id bigserial PRIMARY KEY, name text NOT NULL UNIQUE, kind text NOT NULL,
            device text, site text, channel text, idx integer,
            window_s integer NOT NULL DEFAULT 0, levels text NOT NULL,
            hysteresis double precision NOT NULL DEFAULT 0,
            min_duration_s integer NOT NULL DEFAULT 0, bucket_mm double precision, place text,
            enabled integer NOT NULL DEFAULT 1, params text NOT NULL DEFAULT '{}',
            created double precision NOT NULL, updated double precision NOT NULL)""")
    cur.execute("""
        CREATE TABLE alert_state (
            rule_id bigint NOT NULL REFERENCES rules(id) ON DELETE CASCADE,
            device_id text NOT NULL, idx integer NOT NULL, level text NOT NULL DEFAULT '',
            alert_id bigint, since text NOT NULL DEFAULT '{}', value double precision,
            last_time bigint, updated double precision NOT NULL,
            PRIMARY KEY (rule_id, device_id, idx))""")
    cur.execute("""
        CREATE TABLE alerts (
            id bigserial PRIMARY KEY, rule_id bigint REFERENCES rules(id) ON DELETE SET NULL,
            rule_name text NOT NULL, device_id text, idx integer, kind text NOT NULL,
            channel text, place text NOT NULL, level text NOT NULL, peak_level text NOT NULL,
            value double precision, unit text, status text NOT NULL,
            raised double precision NOT NULL, cleared double precision,
            acked double precision, acked_by text, escalation integer NOT NULL DEFAULT 0,
            escalated double precision, onset double precision, peak_time double precision,
            peak_value double precision, ended double precision)""")
    cur.execute("CREATE INDEX alerts_status ON alerts (status)")
    cur.execute("""
        CREATE TABLE alert_events (
            id bigserial PRIMARY KEY, alert_id bigint NOT NULL REFERENCES alerts(id),
            msg_type text NOT NULL, level text NOT NULL, value double precision,
            time double precision NOT NULL, identifier text NOT NULL UNIQUE, refs text,
            reading_time double precision)""")
    cur.execute("CREATE INDEX alert_events_alert ON alert_events (alert_id, id)")
    cur.execute("""
        CREATE TABLE outbox (
            id bigserial PRIMARY KEY, alert_id bigint REFERENCES alerts(id),
            event_id bigint REFERENCES alert_events(id), transport text NOT NULL,
            recipient text NOT NULL, grp text, level text NOT NULL, language text,
            body text NOT NULL, escalation integer NOT NULL DEFAULT 0,
            status text NOT NULL DEFAULT 'pending', attempts integer NOT NULL DEFAULT 0,
            next_attempt double precision NOT NULL, hold text NOT NULL DEFAULT '',
            created double precision NOT NULL, sent double precision, refs text,
            last_error text, copies integer NOT NULL DEFAULT 0,
            inflight integer NOT NULL DEFAULT 0, concat_ref integer, parts text, kind text,
            sent_by text)""")
    cur.execute("CREATE INDEX outbox_pending ON outbox (status, id)")
    cur.execute("CREATE INDEX outbox_alert ON outbox (alert_id, recipient)")
    cur.execute("""
        CREATE TABLE delivery_log (
            id bigserial PRIMARY KEY, outbox_id bigint NOT NULL REFERENCES outbox(id),
            time double precision NOT NULL, outcome text NOT NULL, detail text, refs text,
            worker text)""")
    cur.execute("CREATE INDEX delivery_log_outbox ON delivery_log (outbox_id)")
    cur.execute("CREATE TABLE engine_runs (id integer PRIMARY KEY, generation bigint NOT NULL)")
    cur.execute("INSERT INTO engine_runs VALUES (1, 0)")
    # Each device's newest frame (seq) the rules have evaluated, and the
    # frames stored but held back until the ones before them come
    # (readings holds only evaluated readings while rules exist).
    cur.execute("CREATE TABLE engine_seq (device_id text PRIMARY KEY, seq bigint NOT NULL)")
    cur.execute("""
        CREATE TABLE engine_held (
            device_id text NOT NULL, seq bigint NOT NULL, received double precision NOT NULL,
            unsynced boolean NOT NULL, rows text NOT NULL, held double precision NOT NULL,
            PRIMARY KEY (device_id, seq))""")


def m005_incoming(cur, timescale, now):
    """The SMS received by the worker that holds the SMS lock (the modem is
    on its machine), as a gateway's `incoming` (gateway/alerts/schema.py
    m104, m105): what each reply did, and sms_key, so that a message read
    again after a crash (the backend deletes it only after the commit) is
    a repeat, not a second acknowledgement. NULL keys never collide."""
    cur.execute("""
        CREATE TABLE incoming (
            id bigserial PRIMARY KEY, time double precision NOT NULL, number text NOT NULL,
            text text NOT NULL, action text NOT NULL, alert_id bigint, detail text, sent text,
            sms_key text UNIQUE)""")
    cur.execute("CREATE INDEX incoming_alert ON incoming (alert_id, id)")
