"""The MQTT transport: frames published to huaico/<kid>/up, gateway acks read from huaico/<kid>/ack.

Wi-Fi joins in the background (WLAN.connect returns at once); the link is
up only when Wi-Fi is connected and a broker session is open. Any socket
error closes the session, and the main loop retries later with backoff.
poll(), called every loop, also keeps the session alive (PINGREQ when idle
for half the keepalive) and closes it when the broker has owed a reply for
that long: a connection that went silent without an error (see mqtt.py).
"""
import time

import network

from firmware.mqtt import MQTTClient, MQTTError


class MqttLink:
    def __init__(self, kid_hex, t):
        self.t = t
        self.up_topic = "huaico/%s/up" % kid_hex
        self.ack_topic = "huaico/%s/ack" % kid_hex
        self.wlan = network.WLAN(network.STA_IF)
        self.wlan.active(True)
        self._joining = False
        self.client = MQTTClient("huaico-" + kid_hex, t["host"], t["port"], t["keepalive_s"], t["io_timeout_ms"])
        self._connected = False
        self._last_io = 0
        self.errors = 0

    def up(self, now_ms):
        """True when frames can go out now; starts Wi-Fi or a session as needed, bounded."""
        if not self.wlan.isconnected():
            if not self._joining:
                self.wlan.connect(self.t["ssid"], self.t["password"])
                self._joining = True
            self._drop()
            return False
        self._joining = False
        if self._connected:
            if time.ticks_diff(now_ms, self._last_io) > self.t["keepalive_s"] * 500:
                return self._guard(self.client.ping, now_ms)
            return True
        try:
            self.client.connect(self.t["connect_timeout_ms"])
            self.client.subscribe(self.ack_topic, 1)
        except (OSError, MQTTError) as exc:
            print("mqtt: %r" % (exc,))
            self.errors += 1
            self._drop()
            return False
        self._connected = True
        self._last_io = now_ms
        return True

    def _guard(self, call, now_ms, *args):
        try:
            call(*args)
        except (OSError, MQTTError) as exc:
            print("mqtt: %r" % (exc,))
            self.errors += 1
            self._drop()
            return False
        self._last_io = now_ms
        return True

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
            print("mqtt: %r" % (exc,))
            self.errors += 1
            self._drop()
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

    def close(self):
        self._drop()
