"""The simulated `network` module: a station WLAN that behaves as each port's does.

What the real ports do, and this model enforces (MicroPython v1.28.0 sources):
- WLAN.connect() only starts the join and returns at once; association and
  DHCP take time, and status() walks through the port's states meanwhile
  (esp32: `ports/esp32/network_wlan.c` network_wlan_connect/status;
  rp2: `extmod/network_cyw43.c` network_cyw43_connect/status, with the
  cyw43-driver's cyw43_wifi_link_status: JOIN, then NOIP until DHCP is done).
  Join time: a MicroPython ESP32 measured 734 ms to join with a static IP and
  1626 ms with DHCP (glenn20/upy-esp32-experiments, "ESPNowvsWifiEnergyUsage");
  the model charges those figures on both ports, and a CYW43 join to an
  access point that is not there fails after 2.5 s (an assumed scan time).
- esp32: once connect() was asked, the port rejoins by itself after the
  network is lost (the STA_DISCONNECTED handler calls esp_wifi_connect again,
  forever by default: config(reconnects=-1)); while the access point is
  gone, status() says STAT_NO_AP_FOUND.
- esp32: light and deep sleep power the radio down and the association is
  lost (ESP-IDF "Sleep Modes": "WiFi connection will not be maintained");
  the port's own rejoin starts at the wake. machine.py calls slept() there.
- rp2 (Pico W, Pico 2 W): the CYW43 driver never rejoins by itself. After
  the access point is lost the link is down while status() still reads
  STAT_CONNECTING (the join state stays "active", cyw43-driver
  src/cyw43_ctrl.c), and a join attempted while the access point is away
  ends in STAT_NO_AP_FOUND for good: only a new connect() tries again.
- esp32: connect() while the station is still connecting (its own rejoin
  included) raises OSError("Wifi Internal Error") (micropython issues
  #17661 on v1.25, #7139); disconnect() first.
- The methods take the arguments each port's C function takes, and nothing
  else: esp32 connect(ssid=None, key=None, *, bssid=None) positional-only;
  rp2 connect(ssid, key=None, *, auth, security, bssid, channel); WLAN() and
  active() take no keywords; connect() before active(True) fails.
Any reset ends the firmware's process and with it this module's state: a
board comes up after a reset with the radio off and no association.
Each change of the radio's state (off, standby after active(False), join,
idle while up or not associated, and each packet sent: netsock.py) goes to
the hardware process's energy model (firmware/sim/energy_model.py) with its time.
"""
from firmware.sim import board, rpc, vtime

STA_IF = 0
AP_IF = 1

_ESP32 = board.state.get("port") == "esp32"
_ASSOC_US = 734000  # scan, authenticate, associate (static-IP join, measured above)
_DHCP_US = 1626000 - _ASSOC_US  # the rest of the measured DHCP join
_SCAN_FAIL_US = 2500000  # assumed, not measured: a CYW43 join to an absent AP gives up after a scan

if _ESP32:
    # ports/esp32/modnetwork.h and modnetwork_globals.h (v1.28.0)
    STAT_IDLE = 1000
    STAT_CONNECTING = 1001
    STAT_GOT_IP = 1010
    STAT_BEACON_TIMEOUT = 200
    STAT_NO_AP_FOUND = 201
    STAT_WRONG_PASSWORD = 202
    STAT_CONNECT_FAIL = 203
    _NOIP = STAT_CONNECTING
    _CONNECT_KW = ("bssid",)
    _CONFIG = ("mac", "ssid", "essid", "hidden", "security", "authmode", "key", "password", "channel",
               "hostname", "dhcp_hostname", "max_clients", "reconnects", "txpower", "protocol", "pm")
else:
    # extmod/modnetwork.c (v1.28.0): the rp2 STAT_ values are the CYW43_LINK_ ones
    STAT_IDLE = 0
    STAT_CONNECTING = 1
    STAT_GOT_IP = 3
    STAT_CONNECT_FAIL = -1
    STAT_NO_AP_FOUND = -2
    STAT_WRONG_PASSWORD = -3
    _NOIP = 2  # CYW43_LINK_NOIP: associated, DHCP not done
    _CONNECT_KW = ("ssid", "key", "auth", "security", "bssid", "channel")
    _CONFIG = ("antenna", "channel", "ssid", "essid", "monitor", "security", "key", "password", "mac", "pm",
               "trace", "txpower", "hostname")

# The join's state, kept at module level as the ports keep it in C statics
# (WLAN() returns the same object each time).
_IDLE = 0
_JOINING = 1
_UP = 2
_LOST = 3  # CYW43 after losing the AP: reads "connecting", does nothing
_NONET = 4  # CYW43 join that found no AP: final until connect()

_st = {"active": False, "state": _IDLE, "from_us": 0, "losses": 0, "radio": "off"}
_CONFIG_VALUES = {"mac": b"\x02\x00\x00\x00\x00\x01", "hostname": "mpy", "pm": 0, "reconnects": -1}


def _now():
    vtime.clock.advance()
    return vtime.clock.v_us


def radio(state, at_us=None):
    """The radio is in `state` from at_us (now by default): told to the energy model once."""
    if _st["radio"] != state:
        _st["radio"] = state
        if rpc.connected():
            rpc.call("power", "wifi", state, _now() if at_us is None else at_us, 0)


def _lose():
    """The association is gone: sockets die, and each port does what it does."""
    _st["losses"] += 1
    if _ESP32:
        _st["state"] = _JOINING  # the port's own reconnect
        _st["from_us"] = _now()
        radio("join")
    else:
        _st["state"] = _LOST
        radio("idle")


def _update():
    state = _st["state"]
    down = board.state["link_down"]
    now = _now()
    if state == _UP and down:
        _lose()
    elif state == _JOINING:
        if down:
            if _ESP32:
                _st["from_us"] = now  # scanning again and again until the AP is back
            elif now - _st["from_us"] >= _SCAN_FAIL_US:
                _st["state"] = _NONET
                radio("idle", _st["from_us"] + _SCAN_FAIL_US)
        elif now - _st["from_us"] >= _ASSOC_US + _DHCP_US:
            _st["state"] = _UP
            radio("idle", _st["from_us"] + _ASSOC_US + _DHCP_US)


def slept():
    """machine.lightsleep() ran: on esp32 the radio was off and the association is gone.
    (Deep sleep is a reset: a new firmware process starts with this module's state fresh.)"""
    if _ESP32 and _st["state"] in (_UP, _JOINING):
        _lose()


def losses():
    """How many times the association was lost: a socket opened before a loss is dead."""
    _update()
    return _st["losses"]


def _no_keywords(kw):
    if kw:
        raise TypeError("function doesn't take keyword arguments")


class WLAN:
    def __init__(self, *args, **kw):
        _no_keywords(kw)
        if len(args) > 1:
            raise TypeError("function expected at most 1 arguments, got %d" % len(args))
        itf = args[0] if args else STA_IF
        if _ESP32 and itf not in (STA_IF, AP_IF):
            raise ValueError("invalid WLAN interface identifier")
        if itf != STA_IF:
            raise ValueError("the simulated board has a station interface only")

    def active(self, *args, **kw):
        _no_keywords(kw)
        if len(args) > 1:
            raise TypeError("function expected at most 2 arguments, got %d" % (len(args) + 1))
        if not args:
            return _st["active"]
        on = bool(args[0])
        if not on:
            if _st["state"] == _UP:
                _st["losses"] += 1  # the radio is off: every socket on it is dead
            _st["state"] = _IDLE
        _st["active"] = on
        radio("idle" if on else "standby")
        # esp32 answers the new state; cyw43's setter returns None
        return on if _ESP32 else None

    def connect(self, *args, **kw):
        for name in kw:
            if name not in _CONNECT_KW:
                raise TypeError("unexpected keyword argument '%s'" % name)
        if len(args) > 2:
            raise TypeError("function takes 2 positional arguments but %d were given" % (len(args) + 1))
        if not _ESP32 and not args and "ssid" not in kw:
            raise TypeError("'ssid' argument required")
        if not _st["active"]:
            # esp_wifi_connect: ESP_ERR_WIFI_NOT_STARTED; cyw43_wifi_join: -CYW43_EPERM
            raise OSError("Wifi Not Started" if _ESP32 else 1)
        _update()
        if _ESP32 and _st["state"] == _JOINING:
            # ESP-IDF refuses ("sta is connecting, return error"): micropython #17661 (v1.25), #7139
            raise OSError("Wifi Internal Error")
        _st["state"] = _JOINING
        _st["from_us"] = _now()
        radio("join")

    def disconnect(self):
        if _st["state"] == _UP:
            _st["losses"] += 1
        _st["state"] = _IDLE
        if _st["active"]:
            radio("idle")

    def isconnected(self):
        _update()
        return _st["state"] == _UP

    def status(self, param=None):
        _update()
        if param is not None:
            if param == "rssi":
                if _st["state"] != _UP:
                    raise OSError("Wifi Not Connected" if _ESP32 else 1)
                return -60
            raise ValueError("unknown status param")
        state = _st["state"]
        if state == _UP:
            return STAT_GOT_IP
        if state == _JOINING:
            if board.state["link_down"]:
                return STAT_NO_AP_FOUND if _ESP32 else STAT_CONNECTING
            if _now() - _st["from_us"] < _ASSOC_US:
                return STAT_CONNECTING
            return _NOIP
        if state == _LOST:
            return STAT_CONNECTING
        if state == _NONET:
            return STAT_NO_AP_FOUND
        return STAT_IDLE

    def ifconfig(self, *args):
        if len(args) > 1:
            raise TypeError("function expected at most 2 arguments, got %d" % (len(args) + 1))
        if self.isconnected():
            return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")
        return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")

    def config(self, *args, **kw):
        if args and kw:
            raise TypeError("can't specify pos and kw args")
        for name in list(args) + list(kw):
            if name not in _CONFIG:
                raise ValueError("unknown config param")
        if args:
            if len(args) != 1:
                raise TypeError("must query one param")
            return _CONFIG_VALUES.get(args[0], 0)
        _CONFIG_VALUES.update(kw)
        return None
