"""The MQTT transport: frames published to huaico/<kid>/up, gateway acks read from huaico/<kid>/ack.

Wi-Fi joins in the background (WLAN.connect returns at once, association
and DHCP take a second or two); the link is up only when Wi-Fi is
connected and a broker session is open. While a join is under way,
joining() is true and the main loop stays awake and looks again soon: an
ESP32 loses its association in light or deep sleep, so a board that slept
while joining would never get on the air. The link asks for a new join
whenever none is under way: the Pico W's CYW43 driver never rejoins a lost
network by itself (its status() keeps saying "connecting"), and a join
that found no access point is over for good. A join that has not finished
in _JOIN_MS is asked again. Any socket error closes the session, and the
main loop retries later with backoff. The broker is an IP address (checked
in firmware/config.py): a DNS lookup blocks with no timeout of its own.
poll(), called every loop, also keeps the session alive (PINGREQ when idle
for half the keepalive) and closes it when the broker has owed a reply for
that long: a connection that went silent without an error (see mqtt.py).

Join to report, leave after the acks: the radio is off (WLAN inactive) from
the end of one report to the start of the next whenever that is _STAY_MS or
more (rest()), so a dry day costs no association and no keepalive. The MQTT
session is persistent (mqtt.py): an ack the gateway publishes after the
board left is kept by the broker and delivered at the next join.
"""
import time

import network

from firmware import log
from firmware.mqtt import MQTTClient, MQTTError

_JOIN_MS = 10000  # a join not done by then is asked again (a measured DHCP join: ~1.6 s)
_NOIP = 2  # rp2 status() between association and DHCP (CYW43_LINK_NOIP); esp32 says STAT_CONNECTING
# Stay on the network when the next report is sooner: a join with DHCP costs ~1.6 s awake
# with the radio on, more than keeping the association until then.
_STAY_MS = 30000


class MqttLink:
    def __init__(self, kid_hex, t):
        self.t = t
        self.up_topic = "huaico/%s/up" % kid_hex
        self.ack_topic = "huaico/%s/ack" % kid_hex
        self.wlan = network.WLAN(network.STA_IF)
        self._join_at = None  # ticks_ms of the last connect(), None when joined or never asked
        self.client = MQTTClient("huaico-" + kid_hex, t["host"], t["port"], t["keepalive_s"], t["io_timeout_ms"])
        self._connected = False
        self._last_io = 0
        self.errors = 0

    def up(self, now_ms):
        """True when frames can go out now; starts Wi-Fi or a session as needed, bounded."""
        if not self.wlan.active():
            self.wlan.active(True)  # the radio comes on to report
        if not self.wlan.isconnected():
            self._drop()
            if not self.joining(now_ms):
                # disconnect() first: an esp32 still rejoining by itself refuses a
                # second connect() ("Wifi Internal Error", micropython #17661)
                self.wlan.disconnect()
                self.wlan.connect(self.t["ssid"], self.t["password"])
                self._join_at = now_ms
            return False
        self._join_at = None
        if self._connected:
            if time.ticks_diff(now_ms, self._last_io) > self.t["keepalive_s"] * 500:
                return self._guard(self.client.ping, now_ms)
            return True
        try:
            self.client.connect(self.t["connect_timeout_ms"])
            self.client.subscribe(self.ack_topic, 1)
        except (OSError, MQTTError) as exc:
            self._fail(exc)
            return False
        self._connected = True
        self._last_io = now_ms
        return True

    def joining(self, now_ms):
        """True while a join asked for less than _JOIN_MS ago is still under way."""
        if self._join_at is None or time.ticks_diff(now_ms, self._join_at) > _JOIN_MS:
            return False
        status = self.wlan.status()
        return status == network.STAT_CONNECTING or (status == _NOIP and network.STAT_GOT_IP == 3)

    def wait(self, ms):
        """Wait up to `ms` for the broker (see MQTTClient.wait); a plain sleep without a session."""
        if not self._connected:
            time.sleep_ms(ms)
            return
        try:
            self.client.wait(ms)
        except (OSError, MQTTError) as exc:
            self._fail(exc)

    def _guard(self, call, now_ms, *args):
        try:
            call(*args)
        except (OSError, MQTTError) as exc:
            self._fail(exc)
            return False
        self._last_io = now_ms
        return True

    def _fail(self, exc):
        print("mqtt: %r" % (exc,))
        self.errors += 1
        self._drop()

    def _drop(self):
        if self._connected:
            self.client.close()
        self._connected = False

    def send(self, frame):
        if not self._connected:
            return False
        return self._guard(self.client.publish, time.ticks_ms(), self.up_topic, frame, 1)

    def poll(self):
        if not self._connected:
            return ()
        client = self.client
        try:
            messages = client.poll()
        except (OSError, MQTTError) as exc:
            self._fail(exc)
            return ()
        now = time.ticks_ms()
        half = self.t["keepalive_s"] * 500
        if client.owed and time.ticks_diff(now, client.owed_since) > half:
            print("mqtt: broker silent for %d ms with %d replies owed" % (time.ticks_diff(now, client.owed_since),
                                                                          client.owed))
            self.errors += 1
            self._drop()
        elif time.ticks_diff(now, self._last_io) > half:
            self._guard(client.ping, now)
        out = []
        for topic, payload in messages:
            if topic == self.ack_topic.encode():
                out.append(payload)
        return out

    def rest(self, idle_ms):
        """Nothing to send for idle_ms: leave the network and switch the radio off (the
        session stays at the broker), unless the next report is too soon to be worth it."""
        if idle_ms < _STAY_MS or not self.wlan.active():
            return
        self._drop()
        self.wlan.disconnect()
        self.wlan.active(False)
        self._join_at = None
        log.event("radio_off", "idle_ms", idle_ms)

    def close(self):
        self._drop()
