"""The far end of the simulated board's UART: a TCP socket or a pty carrying the raw byte stream.

Loaded by the runner only for --uart, to keep the simulator's heap small.
"""
import os
import socket as _real_socket

from firmware.sim import board


class _Peer:
    """The far end of the board's UART: bytes to and from the gateway, cut while the link is down."""

    def __init__(self):
        self.sock = None

    def write(self, data):
        if board.state["link_down"] or self.sock is None:
            return
        try:
            self.sock.write(data)
        except OSError:
            pass

    def read(self, n):
        if self.sock is None or n <= 0:
            return None
        try:
            data = self.sock.recv(n)
        except OSError:
            return None
        if board.state["link_down"]:
            return None  # sent into a dead link
        return data or None


class TcpPeer(_Peer):
    def __init__(self, host, port):
        _Peer.__init__(self)
        s = _real_socket.socket()
        s.connect(_real_socket.getaddrinfo(host, int(port))[0][-1])
        s.setblocking(False)
        self.sock = s


class ListenPeer(_Peer):
    def __init__(self, port):
        _Peer.__init__(self)
        self.server = _real_socket.socket()
        self.server.setsockopt(_real_socket.SOL_SOCKET, _real_socket.SO_REUSEADDR, 1)
        self.server.bind(_real_socket.getaddrinfo("127.0.0.1", int(port))[0][-1])
        self.server.listen(1)
        self.server.setblocking(False)

    def _accept(self):
        if self.sock is None:
            try:
                self.sock = self.server.accept()[0]
                self.sock.setblocking(False)
            except OSError:
                pass

    def write(self, data):
        self._accept()
        _Peer.write(self, data)

    def read(self, n):
        self._accept()
        return _Peer.read(self, n)


class PtyPeer(_Peer):
    def __init__(self, path):
        import select

        _Peer.__init__(self)
        os.system("stty -F %s raw -echo" % path)  # no echo, no CR/LF translation
        self.f = open(path, "r+b")
        self.poller = select.poll()
        self.poller.register(self.f, select.POLLIN)
        self.buf = bytearray(1)

    def write(self, data):
        # No flush(): MicroPython's file writes are unbuffered, and its flush()
        # is an fsync(), which a tty refuses (EINVAL).
        if not board.state["link_down"]:
            self.f.write(data)

    def read(self, n):
        out = bytearray()
        while len(out) < n and self.poller.poll(0):
            if not self.f.readinto(self.buf):
                break
            out.extend(self.buf)
        if board.state["link_down"] or not out:
            return None
        return bytes(out)


def make_peer(spec, usage):
    kind, _, rest = spec.partition(":")
    if kind == "tcp":
        host, port = rest.rsplit(":", 1)
        return TcpPeer(host, port)
    if kind == "tcp-listen":
        return ListenPeer(rest)
    if kind == "pty":
        return PtyPeer(rest)
    usage("unknown --uart %r" % spec)
