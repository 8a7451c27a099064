"""The simulated `socket` module: real sockets that fail while the scenario's link is down.

A Wi-Fi outage drops the TCP session: every call on a socket opened
before or during the outage raises OSError(EHOSTUNREACH) once the link is
down, and the real socket is closed, so the firmware must reconnect.
"""
import socket as _real

from firmware.sim import board

_EHOSTUNREACH = 113
getaddrinfo = _real.getaddrinfo
AF_INET = _real.AF_INET
SOCK_STREAM = _real.SOCK_STREAM


class socket:
    def __init__(self, *args):
        self._s = _real.socket(*args)
        self._dead = False

    def _check(self):
        if board.state["link_down"] and not self._dead:
            self._dead = True
            self._s.close()
        if self._dead:
            raise OSError(_EHOSTUNREACH)

    def connect(self, addr):
        self._check()
        self._s.connect(addr)

    def settimeout(self, t):
        if not self._dead:
            self._s.settimeout(t)

    def setblocking(self, flag):
        if not self._dead:
            self._s.setblocking(flag)

    def send(self, data):
        self._check()
        return self._s.send(data)

    def write(self, data):
        self._check()
        return self._s.write(data)

    def recv(self, n):
        self._check()
        return self._s.recv(n)

    def close(self):
        if not self._dead:
            self._dead = True
            self._s.close()
