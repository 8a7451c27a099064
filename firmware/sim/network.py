"""The simulated `network` module: a WLAN that is connected except in the scenario's link-down windows."""
from firmware.sim import board

STA_IF = 0
AP_IF = 1
STAT_IDLE = 0
STAT_CONNECTING = 1
STAT_GOT_IP = 3


class WLAN:
    def __init__(self, interface=STA_IF):
        self._active = False

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = bool(on)
        return None

    def connect(self, ssid=None, key=None, **kwargs):
        pass

    def disconnect(self):
        pass

    def isconnected(self):
        return self._active and not board.state["link_down"]

    def status(self, param=None):
        return STAT_GOT_IP if self.isconnected() else STAT_CONNECTING

    def ifconfig(self, config=None):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")
