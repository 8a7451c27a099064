"""systemd's notify protocol, so that a unit with Type=notify and WatchdogSec
knows when `huaico run` is ready and restarts it when it hangs.

The protocol is one datagram of "KEY=VALUE" lines to the unix socket named
by $NOTIFY_SOCKET (a leading "@" means the abstract namespace); see
sd_notify(3). A few lines of our own rather than a dependency: without
systemd ($NOTIFY_SOCKET unset) every call is a no-op.

The watchdog is fed only while the gateway is healthy (the caller's check:
the writer thread alive and not stuck), so a hung writer stops the pings
and systemd restarts the service; a thread that pinged unconditionally would
keep a dead gateway "running" for ever.
"""
import os
import socket
import threading


class Notifier:
    def __init__(self, environ=None):
        environ = os.environ if environ is None else environ
        self.address = environ.get("NOTIFY_SOCKET") or None
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process meant to ping; another process
        # (a child) must not take the watchdog for itself.
        mine = not pid or pid == str(os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and mine else None
        if self.address and self.address.startswith("@"):
            self.address = "\0" + self.address[1:]
        self._stop = threading.Event()
        self._thread = None

    @property
    def enabled(self):
        return self.address is not None

    def send(self, *lines):
        """Send KEY=VALUE lines; False when there is no socket to send to."""
        if self.address is None:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(lines).encode(), self.address)
        return True

    def ready(self, status=""):
        return self.send("READY=1", *(["STATUS=" + status] if status else []))

    def stopping(self):
        return self.send("STOPPING=1")

    def start_watchdog(self, healthy):
        """Ping WATCHDOG=1 at half the unit's WatchdogSec while healthy() holds."""
        if self.address is None or not self.watchdog_s:
            return
        def loop():
            while not self._stop.wait(self.watchdog_s / 2):
                if healthy():
                    self.send("WATCHDOG=1")
        self._thread = threading.Thread(target=loop, name="sd-watchdog", daemon=True)
        self._thread.start()

    def stop_watchdog(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
