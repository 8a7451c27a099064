"""Tables of the alerting half of the gateway: rules, their state, alerts, the
outbox of messages and what became of each delivery attempt.

huaico.store.db.migrate applies these after the store's own migrations; windows
read history through the store's readings(device_id, channel, time) index. Each migration is a named
function of a sqlite_utils.Database; a name, once released, never changes.

Why these shapes:
- alert_state holds what a rule needs to continue after a restart (current
  level and its alert, when each level's condition began), and is written in the same transaction as the readings, so a
  crash can never leave an alert raised in one table and forgotten in another.
- alerts is one row per episode (raised .. cleared); alert_events one row per
  CAP message of the episode (Alert, Update, all-clear), whose `references`
  point at the episode's first event.
- outbox is one row per message per recipient; its status only moves forward
  (pending -> sent | failed) and is changed in the same transaction that logs
  the attempt in delivery_log.
"""


def m100_rules(db):
    db.execute("""
        CREATE TABLE IF NOT EXISTS rules (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            device TEXT,
            site TEXT,
            channel TEXT,
            idx INTEGER,
            window_s INTEGER NOT NULL DEFAULT 0,
            levels TEXT NOT NULL,
            hysteresis REAL NOT NULL DEFAULT 0,
            min_duration_s INTEGER NOT NULL DEFAULT 0,
            bucket_mm REAL,
            place TEXT,
            enabled INTEGER NOT NULL DEFAULT 1,
            created REAL NOT NULL,
            updated REAL NOT NULL
        )""")


def m101_alert_state(db):
    # One row per rule and subject (device, index). `since` maps a level to
    # the time its condition began (minimum duration). Windows are not
    # stored: after a restart they are rebuilt from the readings themselves,
    # which are the truth and cost nothing extra to keep.
    db.execute("""
        CREATE TABLE IF NOT EXISTS alert_state (
            rule_id INTEGER NOT NULL REFERENCES rules(id) ON DELETE CASCADE,
            device_id TEXT NOT NULL,
            idx INTEGER NOT NULL,
            level TEXT NOT NULL DEFAULT '',
            alert_id INTEGER,
            since TEXT NOT NULL DEFAULT '{}',
            value REAL,
            last_time INTEGER,
            updated REAL NOT NULL,
            PRIMARY KEY (rule_id, device_id, idx)
        )""")


def m102_alerts(db):
    db.execute("""
        CREATE TABLE IF NOT EXISTS alerts (
            id INTEGER PRIMARY KEY,
            rule_id INTEGER REFERENCES rules(id) ON DELETE SET NULL,
            rule_name TEXT NOT NULL,
            device_id TEXT,
            idx INTEGER,
            kind TEXT NOT NULL,
            channel TEXT,
            place TEXT NOT NULL,
            level TEXT NOT NULL,
            peak_level TEXT NOT NULL,
            value REAL,
            unit TEXT,
            status TEXT NOT NULL,
            raised REAL NOT NULL,
            cleared REAL,
            acked REAL,
            acked_by TEXT,
            escalation INTEGER NOT NULL DEFAULT 0,
            escalated REAL
        )""")
    db.execute("CREATE INDEX IF NOT EXISTS alerts_status ON alerts(status)")
    db.execute("""
        CREATE TABLE IF NOT EXISTS alert_events (
            id INTEGER PRIMARY KEY,
            alert_id INTEGER NOT NULL REFERENCES alerts(id),
            msg_type TEXT NOT NULL,
            level TEXT NOT NULL,
            value REAL,
            time REAL NOT NULL,
            identifier TEXT NOT NULL UNIQUE,
            refs TEXT
        )""")


def m103_outbox(db):
    db.execute("""
        CREATE TABLE IF NOT EXISTS outbox (
            id INTEGER PRIMARY KEY,
            alert_id INTEGER REFERENCES alerts(id),
            event_id INTEGER REFERENCES alert_events(id),
            transport TEXT NOT NULL,
            recipient TEXT NOT NULL,
            grp TEXT,
            level TEXT NOT NULL,
            language TEXT,
            body TEXT NOT NULL,
            escalation INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt REAL NOT NULL,
            hold TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL,
            sent REAL,
            refs TEXT,
            last_error TEXT
        )""")
    db.execute("CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(status, id)")
    db.execute("CREATE INDEX IF NOT EXISTS outbox_recipient_sent ON outbox(recipient, sent)")
    db.execute("""
        CREATE TABLE IF NOT EXISTS delivery_log (
            id INTEGER PRIMARY KEY,
            outbox_id INTEGER NOT NULL REFERENCES outbox(id),
            time REAL NOT NULL,
            outcome TEXT NOT NULL,
            detail TEXT,
            refs TEXT
        )""")
    db.execute("CREATE INDEX IF NOT EXISTS delivery_log_outbox ON delivery_log(outbox_id)")


def m104_incoming(db):
    db.execute("""
        CREATE TABLE IF NOT EXISTS incoming (
            id INTEGER PRIMARY KEY,
            time REAL NOT NULL,
            number TEXT NOT NULL,
            text TEXT NOT NULL,
            action TEXT NOT NULL,
            alert_id INTEGER,
            detail TEXT
        )""")


def m105_incoming_key(db):
    # A message is deleted from the modem or spool only after the commit that
    # stored it, so a crash in between makes the backend hand it out again:
    # sms_key (huaico.alerts.acks.message_key: sender, service-centre time, text)
    # lets that second read be recognised instead of acted on twice. Rows
    # from before this migration have no key; NULLs never collide.
    db.execute("ALTER TABLE incoming ADD COLUMN sent TEXT")
    db.execute("ALTER TABLE incoming ADD COLUMN sms_key TEXT")
    db.execute("CREATE UNIQUE INDEX IF NOT EXISTS incoming_sms_key ON incoming(sms_key)")


def m106_outbox_copies(db):
    # What the dispatcher must know to never repeat an SMS in a loop and to
    # mark the repeat a crash makes unavoidable (gateway/alerts/dispatch.py):
    # copies begun, whether one is in flight (committed before the modem gets
    # it, cleared with its outcome), the concatenation reference of the
    # current copy and the references of the parts the modem has accepted.
    db.execute("ALTER TABLE outbox ADD COLUMN copies INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE outbox ADD COLUMN inflight INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE outbox ADD COLUMN concat_ref INTEGER")
    db.execute("ALTER TABLE outbox ADD COLUMN parts TEXT")


def m107_health(db):
    # The running gateway's view of parts other processes cannot probe
    # without disturbing them (the modem's port is held by `huaico run`):
    # `status` and `doctor` read it. One row per part, changed on a change.
    db.execute("""
        CREATE TABLE IF NOT EXISTS health (
            name TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            since REAL,
            detail TEXT,
            updated REAL NOT NULL
        )""")


def m108_alert_times(db):
    # When things happened, besides when the gateway learnt of them (a board
    # uploading a backlog hours later): the reading times of an alert's
    # onset, peak and end, and of each event; per message its kind (alert,
    # update, clear, late, timeline) and whether a newer one replaced it
    # before it went out (status 'superseded', gateway/alerts/lifecycle.py).
    db.execute("ALTER TABLE alerts ADD COLUMN onset REAL")
    db.execute("ALTER TABLE alerts ADD COLUMN peak_time REAL")
    db.execute("ALTER TABLE alerts ADD COLUMN peak_value REAL")
    db.execute("ALTER TABLE alerts ADD COLUMN ended REAL")
    db.execute("ALTER TABLE alert_events ADD COLUMN reading_time REAL")
    db.execute("ALTER TABLE outbox ADD COLUMN kind TEXT")
    db.execute("CREATE INDEX IF NOT EXISTS outbox_alert ON outbox(alert_id, recipient)")


def m109_rule_params(db):
    # Parameters of the kinds that need more than one threshold per level
    # (intensity-duration curves, k of n gauges), as JSON: a column per
    # parameter would grow with every kind.
    db.execute("ALTER TABLE rules ADD COLUMN params TEXT NOT NULL DEFAULT '{}'")


MIGRATIONS = [
    ("m100_rules", m100_rules),
    ("m101_alert_state", m101_alert_state),
    ("m102_alerts", m102_alerts),
    ("m103_outbox", m103_outbox),
    ("m104_incoming", m104_incoming),
    ("m105_incoming_key", m105_incoming_key),
    ("m106_outbox_copies", m106_outbox_copies),
    ("m107_health", m107_health),
    ("m108_alert_times", m108_alert_times),
    ("m109_rule_params", m109_rule_params),
]
