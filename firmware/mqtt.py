"""A small MQTT 3.1.1 client for Wi-Fi boards, every call bounded in time.

Why our own and not umqtt.simple: its QoS 1 publish waits for the PUBACK
in a loop and its wait_msg() blocks, while the main loop must return to
its watchdog health check within a known time. Here every write has a
timeout and reading never blocks: poll() takes what the socket holds,
parses whole packets out of one fixed buffer and returns the application
messages. A broker's PUBACK only says the broker has the frame, so it
never drops one from the ring (that takes the gateway's ack); it serves as
proof of life. `owed` counts the replies the broker owes (PUBACK, SUBACK,
PINGRESP) and `owed_since` is when the oldest went unanswered: a broker
that stops answering on an open socket (an access point or NAT that lost
the connection's state: no error ever comes back) shows there, and the
link drops the session and opens a new one.
"""
import socket
import struct
import time

_CONNECT = 0x10
_CONNACK = 0x20
_PUBLISH = 0x30
_PUBACK = 0x40
_SUBSCRIBE = 0x82
_SUBACK = 0x90
_PINGREQ = b"\xc0\x00"
_PINGRESP = 0xD0
_DISCONNECT = b"\xe0\x00"
_BUF = 512  # largest packet we accept from the broker (an ack is ~70 bytes)
_EAGAIN = (11, 35, 110, 115, 116)  # EAGAIN, EAGAIN (BSD), ETIMEDOUT, EINPROGRESS, ETIMEDOUT (lwIP)


class MQTTError(Exception):
    pass


def _length(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return out


def _str(text):
    data = text.encode() if isinstance(text, str) else text
    return struct.pack(">H", len(data)) + data


class MQTTClient:
    def __init__(self, client_id, host, port=1883, keepalive=60, io_timeout_ms=1000):
        self.client_id = client_id
        self.host = host
        self.port = port
        self.keepalive = keepalive
        self.io_timeout = io_timeout_ms / 1000
        self.sock = None
        self._buf = bytearray(_BUF)
        self._n = 0
        self._pid = 0
        self.pubacks = 0  # broker receipts, for the log only
        self.owed = 0
        self.owed_since = 0

    def connect(self, timeout_ms):
        """Open the session. Not clean: the broker keeps the subscription and queues the
        QoS 1 acks published while the board is off the network (it leaves between reports,
        mqttlink.py); what it resends is acked again at once (_publish_in). A frame whose
        ack never came is still resent from the ring."""
        self.close()
        addr = socket.getaddrinfo(self.host, self.port)[0][-1]
        sock = socket.socket()
        self.sock = sock
        sock.settimeout(timeout_ms / 1000)
        try:
            sock.connect(addr)
            body = _str("MQTT") + bytes((4, 0x00)) + struct.pack(">H", self.keepalive) + _str(self.client_id)
            self._send(bytes((_CONNECT,)) + _length(len(body)) + body)
            head = self._read_exact(4, time.ticks_add(time.ticks_ms(), timeout_ms))
        except OSError as exc:
            self.close()
            raise MQTTError("connect: %r" % exc)
        if head[0] != _CONNACK or head[3] != 0:
            self.close()
            raise MQTTError("broker refused: CONNACK %r" % bytes(head))
        sock.settimeout(self.io_timeout)
        self._n = 0
        self.owed = 0

    def _expect(self):
        """One more reply owed by the broker."""
        if not self.owed:
            self.owed_since = time.ticks_ms()
        self.owed += 1

    def _answered(self):
        if self.owed:
            self.owed -= 1
            self.owed_since = time.ticks_ms()

    def _read_exact(self, n, deadline):
        # Each recv is bounded by the socket's timeout; the deadline bounds a broker
        # that dribbles the CONNACK a byte at a time.
        out = b""
        while len(out) < n:
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                raise OSError(110)
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise OSError(104)
            out += chunk
        return out

    def _send(self, data):
        # settimeout bounds each write; a stalled broker raises OSError.
        view = memoryview(data)
        while len(view):
            sent = self.sock.send(view)
            if not sent:
                raise OSError(104)
            view = view[sent:]

    def _next_pid(self):
        self._pid = self._pid % 65535 + 1
        return self._pid

    def publish(self, topic, payload, qos=1):
        pid = self._next_pid() if qos else 0
        head = _str(topic) + (struct.pack(">H", pid) if qos else b"")
        self._send(bytes((_PUBLISH | (qos << 1),)) + _length(len(head) + len(payload)) + head)
        self._send(payload)
        if qos:
            self._expect()
        return pid

    def subscribe(self, topic, qos=1):
        body = struct.pack(">H", self._next_pid()) + _str(topic) + bytes((qos,))
        self._send(bytes((_SUBSCRIBE,)) + _length(len(body)) + body)
        self._expect()

    def ping(self):
        self._send(_PINGREQ)
        self._expect()

    def poll(self):
        """[(topic, payload)] of the messages that arrived; never waits."""
        self.sock.setblocking(False)
        try:
            while self._n < _BUF and self._take():
                pass
        finally:
            self.sock.settimeout(self.io_timeout)
        return self._packets()

    def wait(self, ms):
        """Wait up to `ms` for the broker's next bytes, awake on the socket as a board
        waits for its radio; poll() then parses them. A reply that takes a while is
        still in time: waiting in sleeps instead would let the board miss it."""
        if self._n >= _BUF:
            return
        self.sock.settimeout(ms / 1000)
        try:
            self._take()
        finally:
            self.sock.settimeout(self.io_timeout)

    def _take(self):
        """One recv into the buffer; False when nothing came before the socket's timeout."""
        try:
            chunk = self.sock.recv(_BUF - self._n)
        except OSError as exc:
            if exc.args and exc.args[0] in _EAGAIN:
                return False
            raise
        if not chunk:
            raise OSError(104)  # the broker closed the connection
        self._buf[self._n:self._n + len(chunk)] = chunk
        self._n += len(chunk)
        return True

    def _packets(self):
        out = []
        buf = self._buf
        while self._n >= 2:
            size = 0
            shift = 0
            at = 1
            while True:
                if at >= self._n:
                    return out  # the length itself is not all here yet
                byte = buf[at]
                size |= (byte & 0x7F) << shift
                at += 1
                if not byte & 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise MQTTError("malformed remaining length")
            if at + size > _BUF:
                raise MQTTError("packet of %d bytes is larger than %d" % (size, _BUF))
            if at + size > self._n:
                return out
            kind = buf[0] & 0xF0
            if kind == _PUBLISH:
                out.append(self._publish_in(buf[0], bytes(buf[at:at + size])))
            elif kind in (_PUBACK, _SUBACK, _PINGRESP):
                if kind == _PUBACK:
                    self.pubacks += 1
                self._answered()
            else:
                raise MQTTError("unexpected packet type 0x%02x" % kind)
            rest = self._n - at - size
            buf[0:rest] = buf[at + size:self._n]
            self._n = rest
        return out

    def _publish_in(self, first, body):
        (tlen,) = struct.unpack_from(">H", body, 0)
        topic = body[2:2 + tlen]
        at = 2 + tlen
        qos = (first >> 1) & 3
        if qos:
            self._send(bytes((_PUBACK, 2)) + body[at:at + 2])
            at += 2
        return topic, body[at:]

    def close(self):
        if self.sock is not None:
            try:
                self.sock.settimeout(0.2)
                self.sock.send(_DISCONNECT)
            except OSError:
                pass
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self._n = 0
