"""Home Assistant MQTT discovery: every station appears in a Home Assistant
on the same broker without any set-up there.

For each device and each channel it reports, a retained config message on
`<ha_prefix>/sensor/huaico_<device id>/<channel>[_<index>]/config` describes
one sensor entity (name, unit, device class, the state topic and template,
the gateway's online/offline topic as availability), grouped under one HA
device per station (name, board, site as the suggested area). The values
go, retained, to `<prefix>/<device id>/state` as one JSON object of the
newest value per channel, so a Home Assistant that starts later shows them
at once. A retired device's config topics are emptied, which removes its
entities (the HA discovery protocol's way).

Its own read-only connection and thread, following the readings table by
rowid like the SenML feed (huaico.mqtt.readings_feed); the only cost on the
writer's side is none.
"""
import json
import logging
import sqlite3
import threading

from huaico import version
from huaico.store import readings as readings_query

log = logging.getLogger("huaico.ha")

# channel name -> (Home Assistant unit, device_class, entity_category).
# Units HA knows for a class (it refuses the entity otherwise); None: none.
_ENTITY = {
    "rain": ("mm", "precipitation", None),
    "rain_tips": (None, None, None),
    "rain_rate": ("mm/h", "precipitation_intensity", None),
    "water_level": ("m", "distance", None),
    "water_temp": ("°C", "temperature", None),
    "air_temp": ("°C", "temperature", None),
    "ph": (None, "ph", None),
    "turbidity": ("NTU", None, None),
    "conductivity": ("S/m", None, None),
    "dissolved_oxygen": ("kg/m³", None, None),
    "soil_moisture": ("%", "moisture", None),
    "tilt_x": ("°", None, None),
    "tilt_y": ("°", None, None),
    "crack_width": ("m", "distance", None),
    "displacement": ("m", "distance", None),
    "vibration_rms": ("m/s²", None, None),
    "vibration_peak": ("m/s²", None, None),
    "strain": (None, None, None),
    "battery": ("V", "voltage", "diagnostic"),
    "rssi": ("dBm", "signal_strength", "diagnostic"),
    "uptime": ("s", "duration", "diagnostic"),
    "load": ("kg", "weight", None),
    "water_level_rate": ("m/h", None, None),
}


def state_key(channel, index):
    """The key of a channel in the state object (SenML's record name)."""
    return channel if not index else "%s/%d" % (channel, index)


def config_topic(ha_prefix, device_id, channel, index):
    return "%s/sensor/huaico_%s/%s/config" % (ha_prefix, device_id,
                                              state_key(channel, index).replace("/", "_"))


def config_payload(device, channel, index, prefix, availability):
    """The discovery config of one channel of one device, as a dict."""
    unit, device_class, category = _ENTITY.get(channel, (None, None, None))
    key = state_key(channel, index)
    payload = {
        "name": key.replace("_", " ").replace("/", " "),
        "unique_id": "huaico_%s_%s" % (device["id"], key.replace("/", "_")),
        "state_topic": "%s/%s/state" % (prefix, device["id"]),
        "value_template": "{{ value_json['%s'] }}" % key,
        "state_class": "measurement",
        "availability_topic": availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {"identifiers": ["huaico_%s" % device["id"]], "name": device["name"],
                   "manufacturer": "huaico", "model": device["board"],
                   "suggested_area": device["site"]},
        "origin": {"name": "huaico", "sw_version": version.installed()},
    }
    if unit:
        payload["unit_of_measurement"] = unit
    if device_class:
        payload["device_class"] = device_class
    if category:
        payload["entity_category"] = category
    return payload


class Discovery:
    """Keeps Home Assistant's view of the stations in step with the database.

    mqtt: a started huaico.mqtt.link.MqttLink; poll_s: how often to look for new
    readings and changed devices."""

    def __init__(self, database_path, mqtt, config, availability, poll_s=2.0):
        self.database_path = database_path
        self.mqtt = mqtt
        self.prefix = config["mqtt"]["topic_prefix"]
        self.ha_prefix = config["mqtt"]["ha_prefix"]
        self.availability = availability
        self.poll_s = poll_s
        self.stopping = threading.Event()
        self._thread = None
        self._devices = {}  # id -> the row as last announced
        self._channels = {}  # id -> {(channel name, index)} seen in its readings
        self._announced = {}  # id -> {(channel name, index)} with a config published
        self._values = {}  # id -> {state key: value}
        self._cursor = 0

    def start(self):
        self._thread = threading.Thread(target=self._run, name="ha-discovery", daemon=True)
        self._thread.start()

    def stop(self):
        self.stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self):
        conn = sqlite3.connect("file:%s?mode=ro" % self.database_path, uri=True, timeout=5.0)
        conn.row_factory = sqlite3.Row
        try:
            self._start(conn)
            while not self.stopping.wait(self.poll_s):
                try:
                    self.step(conn)
                except sqlite3.Error as exc:
                    log.warning("event=ha_discovery_failed error=%r", exc)
        finally:
            conn.close()

    def _start(self, conn):
        """The newest value of every channel of every device (one query per
        device, as `huaico status` does), then follow new rows."""
        self._cursor = conn.execute("SELECT coalesce(max(rowid), 0) FROM readings").fetchone()[0]
        for device_id, in conn.execute("SELECT id FROM devices WHERE retired = 0"):
            for code, index, value, _ in conn.execute(
                    "SELECT channel, idx, value, max(time) FROM readings WHERE device_id = ? "
                    "AND rowid <= ? GROUP BY channel, idx", [device_id, self._cursor]):
                self._remember(device_id, code, index, value)
        self.step(conn)

    def _remember(self, device_id, code, index, value):
        name = readings_query.channel_name(code)
        self._channels.setdefault(device_id, set()).add((name, index))
        self._values.setdefault(device_id, {})[state_key(name, index)] = float(
            readings_query.value_text(value, code))

    def step(self, conn):
        """One pass: new readings, then announce what changed."""
        changed = set()
        rows = conn.execute("SELECT rowid, device_id, channel, idx, value FROM readings "
                            "WHERE rowid > ? ORDER BY rowid", [self._cursor]).fetchall()
        for row in rows:
            self._remember(row["device_id"], row["channel"], row["idx"], row["value"])
            changed.add(row["device_id"])
            self._cursor = row["rowid"]
        devices = {row["id"]: dict(row) for row in conn.execute(
            "SELECT id, name, site, board, retired FROM devices")}
        for device_id, device in devices.items():
            if device["retired"]:
                if device_id in self._devices:
                    self._withdraw(device_id)
                continue
            announced = self._devices.get(device_id)
            if announced != device or device_id in changed:
                self._announce(device, renew=announced != device)
        return len(rows)

    def _announce(self, device, renew):
        device_id = device["id"]
        channels = self._channels.get(device_id)
        if not channels:
            return
        for channel, index in sorted(channels):
            topic = config_topic(self.ha_prefix, device_id, channel, index)
            if renew or (channel, index) not in self._announced.get(device_id, ()):
                payload = config_payload(device, channel, index, self.prefix, self.availability)
                self.mqtt.publish(topic, json.dumps(payload, sort_keys=True).encode(), qos=1,
                                  retain=True)
        self._announced[device_id] = set(channels)
        self._devices[device_id] = device
        self.mqtt.publish("%s/%s/state" % (self.prefix, device_id),
                          json.dumps(self._values[device_id], sort_keys=True).encode(), qos=1,
                          retain=True)

    def _withdraw(self, device_id):
        for channel, index in sorted(self._announced.get(device_id, ())):
            self.mqtt.publish(config_topic(self.ha_prefix, device_id, channel, index), b"",
                              qos=1, retain=True)
        self.mqtt.publish("%s/%s/state" % (self.prefix, device_id), b"", qos=1, retain=True)
        self._devices.pop(device_id, None)
        self._announced.pop(device_id, None)
        log.info("event=ha_withdrawn device=%s", device_id)
