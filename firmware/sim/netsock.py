"""The simulated `socket` module: real sockets that work only while Wi-Fi is associated.

A TCP session lives on the association it was opened on: once the
scenario's link goes down, or the association is lost in any way (an esp32
sleep, a CYW43 that dropped off the access point: firmware/sim/network.py),
every call on a socket opened before raises OSError(EHOSTUNREACH) and the
real socket is closed, so the firmware must open a new session. Without an
association lwIP has no route and a new connect() fails the same way.

getaddrinfo() is lwIP's: an IPv4 literal is parsed at once, a name is asked
of the DNS servers DHCP gave, and the call blocks with no timeout of its own
until an answer or lwIP's own give-up (rp2: `extmod/modlwip.c`
lwip_getaddrinfo polls until the callback; esp32: `ports/esp32/modsocket.c`
_getaddrinfo_inner waits in lwip_getaddrinfo; v1.28.0). lwIP's dns.c asks
each server with waits of 1, 1, 2 and 3 s (DNS_MAX_RETRIES 4, DNS_TMR_INTERVAL
1 s) before the next server, then fails with OSError(-2). The scenario's
"dns" says how many servers there are and whether their upstream answers:
{"servers": 1, "upstream": "up" | "dead"}; an answered lookup costs a round
trip and uses the host's resolver (names of 127.0.0.1 only, e.g. localhost).
"""
import socket as _real

from firmware.sim import board, rpc, vtime
import firmware.sim.network as _network

_EHOSTUNREACH = 113
_EAGAIN = 11
_ETIMEDOUT = 110
_DNS_TRIES_US = (1000000, 1000000, 2000000, 3000000)  # lwIP dns_check_entry: tmr = retries
_DNS_RTT_US = 20000
AF_INET = _real.AF_INET
SOCK_STREAM = _real.SOCK_STREAM


def _literal(host):
    parts = host.split(".")
    if len(parts) != 4:
        return False
    for part in parts:
        if not part.isdigit() or int(part) > 255:
            return False
    return True


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    if _literal(host):
        return _real.getaddrinfo(host, port)
    dns = board.state.get("dns") or {}
    if not _network.WLAN().isconnected() or dns.get("upstream") == "dead":
        for _ in range(dns.get("servers", 1)):
            for wait in _DNS_TRIES_US:
                vtime.clock.idle(wait, False)  # awake, polling lwIP: the watchdog keeps counting
        raise OSError(-2)
    vtime.clock.idle(_DNS_RTT_US, False)
    loopback = _real.getaddrinfo("127.0.0.1", port)[0][-1]
    for entry in _real.getaddrinfo(host, port):
        if entry[-1] == loopback:
            return [entry]
    raise OSError(-2)  # the simulated network is 127.0.0.1 only


def _sent():
    """A packet goes on the air: the energy model charges the radio's transmit burst."""
    if rpc.connected():
        vtime.clock.advance()
        rpc.call("power", "wifi", "tx", vtime.clock.v_us, 1)


class socket:
    def __init__(self, *args):
        self._s = _real.socket(*args)
        self._losses = _network.losses()
        self._dead = False
        self._timeout = None  # blocking; 0 non-blocking; else seconds

    def _check(self):
        gone = board.state["link_down"] or _network.losses() != self._losses
        if gone and not self._dead:
            self._dead = True
            self._s.close()
        if self._dead:
            raise OSError(_EHOSTUNREACH)

    def connect(self, addr):
        self._check()
        if not _network.WLAN().isconnected():
            raise OSError(_EHOSTUNREACH)
        self._s.connect(addr)

    def settimeout(self, t):
        self._timeout = t
        if not self._dead:
            self._s.settimeout(t)

    def setblocking(self, flag):
        self._timeout = None if flag else 0
        if not self._dead:
            self._s.setblocking(flag)

    def _io(self, method, arg):
        """A read or write: a timeout given by settimeout() that runs out is OSError(ETIMEDOUT) on
        both ports, EAGAIN only without a timeout (non-blocking): extmod/modlwip.c lwip_tcp_receive/
        lwip_tcp_send, ports/esp32/modsocket.c (retries == 0 ? EWOULDBLOCK : ETIMEDOUT), v1.22.0-
        v1.28.0. The unix port under the simulator says EAGAIN for both."""
        try:
            return method(arg)
        except OSError as exc:
            if exc.args and exc.args[0] == _EAGAIN and self._timeout:
                raise OSError(_ETIMEDOUT)
            raise

    def send(self, data):
        self._check()
        _sent()
        return self._io(self._s.send, data)

    def write(self, data):
        self._check()
        _sent()
        return self._io(self._s.write, data)

    def recv(self, n):
        self._check()
        return self._io(self._s.recv, n)

    def close(self):
        if not self._dead:
            self._dead = True
            self._s.close()
