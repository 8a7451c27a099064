"""Readers: threads that take frames off serial ports, UDP and MQTT and hand
them to the writer, each with a way to send that frame's ack back.

A reader never touches the database and never acks by itself: it submits
(source, frame bytes, receive time, reply) and the writer calls reply(ack)
after the commit. Serial links carry COBS+CRC framing (protocol.link); its
errors (line noise) go to the writer too, which counts and records them. A
UDP datagram or an MQTT message is one frame as it is.

A serial port that fails (a USB adapter unplugged, a pty whose other end
closed) is reopened with backoff; the readers end only when stopped.
"""
import collections
import logging
import queue
import socket
import threading
import time

import serial

from huaico.protocol import link

log = logging.getLogger("huaico.ingest")

READ_TIMEOUT = 0.1
WRITE_TIMEOUT = 1.0
REOPEN_DELAYS = (0.2, 5.0)


class IngestConfigError(ValueError):
    """A reader setting that cannot work (names it)."""


class _Reader:
    def __init__(self, writer, name):
        self.writer = writer
        self.name = name
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()

    def join(self, timeout=5):
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


class SerialReader(_Reader):
    """One serial port by pyserial URL: a path, loop://, spy://, rfc2217://..."""

    def __init__(self, writer, url, baudrate=115200, max_frame=link.MAX_FRAME):
        _Reader.__init__(self, writer, "serial:" + url)
        self.url = url
        self.baudrate = baudrate
        self.max_frame = max_frame
        self.port = None
        self.opened = threading.Event()
        self._write_lock = threading.Lock()

    def _open(self):
        return serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=READ_TIMEOUT,
                                     write_timeout=WRITE_TIMEOUT)

    def reply(self, ack):
        """Send an ack on this port (called by the writer thread)."""
        self.send_all((ack,))

    def send_all(self, acks):
        """Send a batch's acks on this port in one write: a write per ack
        costs a system call and pyserial's select each, a fifth of the
        writer's time at 20k frames/s."""
        port = self.port
        if port is None:
            raise serial.SerialException("%s is closed" % self.url)
        encode = link.encode
        max_frame = self.max_frame
        data = b"".join([encode(ack, max_frame) for ack in acks])
        with self._write_lock:
            port.write(data)

    def _run(self):
        delay = REOPEN_DELAYS[0]
        while not self._stop.is_set():
            try:
                self.port = self._open()
            except (serial.SerialException, OSError, ValueError) as exc:
                log.warning("event=serial_open_failed port=%s error=%r retry_s=%.1f",
                            self.url, exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, REOPEN_DELAYS[1])
                continue
            log.info("event=serial_open port=%s baudrate=%d", self.url, self.baudrate)
            self.opened.set()
            delay = REOPEN_DELAYS[0]
            try:
                self._pump(self.port)
            except (serial.SerialException, OSError) as exc:
                log.warning("event=serial_failed port=%s error=%r", self.url, exc)
                self._stop.wait(delay)
            finally:
                port, self.port = self.port, None
                self.opened.clear()
                try:
                    port.close()
                except (serial.SerialException, OSError):
                    pass

    def _pump(self, port):
        decoder = link.Decoder(self.max_frame)
        source = self.name
        submit = self.writer.submit
        reply = _PortReply(self)
        while not self._stop.is_set():
            chunk = port.read(port.in_waiting or 1)
            if not chunk:
                continue
            received = time.time()
            for item in decoder.feed(chunk):
                submit(source, item, received, None if isinstance(item, link.LinkError) else reply)


class _PortReply:
    """The reply handed to the writer with each frame from one serial port;
    its send_all lets the writer send the whole batch's acks in one write."""

    __slots__ = ("send_all",)

    def __init__(self, reader):
        self.send_all = reader.send_all

    def __call__(self, ack):
        self.send_all((ack,))


def parse_address(text):
    """("host", port) from "HOST:PORT" (an IPv6 host in brackets)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise IngestConfigError("UDP address %r: expected HOST:PORT" % text)
    return host.strip("[]") or "0.0.0.0", int(port)


class UdpReader(_Reader):
    """One UDP socket: each datagram is one frame; the ack goes back to its sender."""

    def __init__(self, writer, address):
        _Reader.__init__(self, writer, "udp:" + address)
        host, port = parse_address(address)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(READ_TIMEOUT)
        self.address = self.sock.getsockname()

    def _run(self):
        sock = self.sock
        try:
            while not self._stop.is_set():
                try:
                    data, sender = sock.recvfrom(65535)
                except socket.timeout:
                    continue
                except OSError as exc:
                    log.warning("event=udp_failed address=%s error=%r", self.address, exc)
                    self._stop.wait(READ_TIMEOUT)
                    continue
                self.writer.submit("udp:%s:%d" % sender[:2], data, time.time(),
                                   self._replier(sender))
        finally:
            sock.close()

    def _replier(self, sender):
        def reply(ack):
            self.sock.sendto(ack, sender)
        return reply


class MqttReader(_Reader):
    """Frames from Wi-Fi boards on <prefix>/<kid hex>/up; acks on <prefix>/<kid hex>/ack.

    The link (huaico.mqtt.link.MqttLink) is shared with the dispatcher; it must
    have clean=False so that the broker queues QoS 1 frames for us while the
    gateway is down. This thread is the only reader of link.events.

    Acks the link refuses are held, not dropped. After a reconnect with a
    persistent session the broker sends the frames it kept right after
    CONNACK, before our resubscription is acked; the link only publishes
    once it is "connected" (subscriptions acked), so the writer's acks for
    those frames come back refused. Losing them would make every board
    resend all it sent while the gateway was away. They are published when
    the "connected" event arrives (or dropped, oldest first, beyond
    MAX_HELD_ACKS: those boards resend and get a duplicate's ack).
    """

    MAX_HELD_ACKS = 10000

    def __init__(self, writer, mqtt, prefix):
        _Reader.__init__(self, writer, "mqtt")
        self.mqtt = mqtt
        self.prefix = prefix
        self.up_topic = prefix + "/+/up"
        # Guards _held. reply() publishes and holds under it, and the flush
        # on "connected" takes it, so an ack refused just before the link
        # came up is held before the flush looks (not left until the next
        # reconnect).
        self._held_lock = threading.Lock()
        self._held = collections.deque()
        mqtt.subscribe(self.up_topic, qos=1)

    def _run(self):
        events = self.mqtt.events
        while not self._stop.is_set():
            try:
                event = events.get(timeout=READ_TIMEOUT)
            except queue.Empty:
                continue
            kind = event[0]
            if kind == "message":
                self._message(event[1], event[2])
            elif kind in ("connected", "disconnected", "subscribe-failed"):
                log.info("event=mqtt_%s detail=%s", kind.replace("-", "_"), event[1:])
                if kind == "connected":
                    self._flush_held()

    def _message(self, topic, payload):
        parts = topic.split("/")
        if len(parts) < 3 or parts[-1] != "up":
            return
        device = parts[-2]
        ack_topic = "%s/%s/ack" % (self.prefix, device)

        def reply(ack):
            self._publish_ack(ack_topic, ack)

        self.writer.submit("mqtt:" + device, bytes(payload), time.time(), reply)

    def _publish_ack(self, topic, ack):
        """Publish an ack, or hold it while the link is not connected (see
        the class docstring). Runs on the writer thread."""
        with self._held_lock:
            self._send_or_hold(topic, ack)

    def _send_or_hold(self, topic, ack):
        delivery = self.mqtt.publish(topic, ack, qos=1)
        # Refused at once means it never reached paho; a publish in flight
        # when the link drops is paho's to resend, not ours.
        if delivery.done and not delivery.wait(0):
            if len(self._held) >= self.MAX_HELD_ACKS:
                self._held.popleft()
                self.writer.counters.add("mqtt_acks_dropped")
            self._held.append((topic, ack))

    def _flush_held(self):
        with self._held_lock:
            held, self._held = self._held, collections.deque()
            for topic, ack in held:
                self._send_or_hold(topic, ack)
        if held:
            log.info("event=mqtt_held_acks_sent count=%d still_held=%d",
                     len(held), len(self._held))
