"""Boot: check the site config, build the sensors and local rules, then start the main loop.

What is needed once per boot (the config checks in firmware/config.py, the
sensor factory and its type table in firmware/sensors.py, the channel
registry) is loaded, used and unloaded before the main loop's modules
(firmware/app.py, protocol/frame.py) are imported: the boot's peak heap is
then the larger of the two halves, not their sum (~35 KB less on the 64-bit
unix port). Which modules load first matters too: see main().
"""
import gc
import sys

import machine

from firmware import log


def unload(name):
    """Forget a module needed only at boot, so the collector can take it back.
    Its package keeps it as an attribute too: that reference goes as well."""
    sys.modules.pop(name, None)
    parent, _, leaf = name.rpartition(".")
    package = sys.modules.get(parent)
    if package is not None and hasattr(package, leaf):
        delattr(package, leaf)


class Settings:
    """The checked site config, held without the checking code."""


_SETTINGS = ("kid", "key", "board", "report_s", "transport", "watchdog_ms", "sleep_mode", "sleep_max_ms",
             "ring_frames", "seq_block", "low_battery_mv", "power", "battery_steps")


def load_settings(site_path):
    """The site config checked by firmware.config (then unloaded) and each sensor
    entry by firmware.sensors; None when refused, after every problem is printed."""
    from firmware import config

    settings = None
    try:
        site = config.load(site_path, None, False)
        # A plain copy: a config.Site would keep the whole module alive.
        settings = Settings()
        for name in _SETTINGS:
            setattr(settings, name, getattr(site, name))
        raw = site.raw
        errors = []
        del site
    except config.ConfigError as exc:
        raw = exc.raw
        errors = exc.errors
    finally:
        del config
        unload("firmware.config")
        unload("firmware.read_times")
    gc.collect()
    errors.extend(_sensor_errors(raw))
    if errors:
        for line in errors:
            print("config error: " + line)
        log.event("config_refused", "errors", len(errors))
        return None
    return settings, raw["sensors"], raw["thresholds"]


def _sensor_errors(raw):
    """Each sensor entry's own problems (config.py checked the list itself)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("sensors"), list):
        return []
    from boards import load

    try:
        board = load(raw.get("board"))
    except (ValueError, ImportError):
        return []  # config.py has said so
    from firmware import sensors as factory

    errors = []
    for at, entry in enumerate(raw["sensors"]):
        if isinstance(entry, dict):
            for line in factory.validate(board, entry):
                errors.append("sensors[%d]: %s" % (at, line))
    return errors


def build(board, sensors_cfg, thresholds, groups):
    """The Sensors (the rain gauge first: its IRQ counts from the earliest instant
    of boot), each with its power group (firmware/power.py), and the rules as
    (sensor, code, index, above, below, clear, report_ms, window_ms, rise) with
    thresholds in the channel's integer units (a rise rule's rise is its `above`)."""
    from firmware import sensors as factory
    from protocol import channels

    order = sorted(sensors_cfg, key=lambda cfg: 0 if cfg["type"] == "rain_gauge" else 1)
    sensors = [factory.make(board, cfg, groups.get(cfg.get("power"))) for cfg in order]
    rules = []
    for raw in thresholds:
        channel = channels.BY_NAME[raw["channel"]]
        index = 0
        for s in sensors:
            if s.name == raw["sensor"]:
                index = s.index
        rise = "rise" in raw
        above = channel.to_int(raw["rise" if rise else "above"]) if rise or "above" in raw else None
        below = channel.to_int(raw["below"]) if "below" in raw and not rise else None
        clear = channel.to_int(raw["clear"]) if "clear" in raw else (above if above is not None else below)
        rules.append((raw["sensor"], channel.code, index, above, below, clear, raw["report_s"] * 1000,
                      raw.get("window_s", 0) * 1000, rise))
    del factory, channels
    unload("firmware.sensors")
    unload("protocol.channels")
    return sensors, rules


def start(site_path="site.json", root="/data"):
    """Boot: the App ready to run, or None when the config is refused. This module
    is unloaded on the way out (its work is done): the caller drops its reference
    to start() before it runs the App, so the boot code leaves the heap."""
    # Modules that live as long as the board runs are loaded first, at the bottom
    # of the heap: loaded by the boot halves, they would sit between the boot-only
    # modules, and unloading those would leave holes too small for the main loop's
    # (the smallest heap that boots went from 106 to 100 KB on the unix port).
    # firmware.retained comes with the App: loaded here it left the sensors' table
    # no room at 100 KB (101.9 KB needed with it later, 103.2 KB with it here).
    import firmware.flash
    import firmware.sensor
    import protocol.frame  # noqa: F401

    log.event("boot", "cause", machine.reset_cause())
    checked = load_settings(site_path)
    gc.collect()
    if checked is None:
        unload("firmware.boot")
        return None
    site, sensors_cfg, thresholds = checked
    from boards import load

    board = load(site.board)
    # Before the sensors and the watchdog start: a refused board stays at the REPL.
    from firmware.release import refusal

    refused = refusal(board)
    del refusal
    unload("firmware.release")
    if refused is not None:
        print(refused)
        log.event("release_refused")
        unload("firmware.boot")
        return None
    # The power pins first: each rail is driven off before anything on it is touched.
    from firmware.power import groups

    site.groups = groups(site.power)
    del groups
    sensors, rules = build(board, sensors_cfg, thresholds, site.groups)
    del checked, sensors_cfg, thresholds
    gc.collect()
    from firmware.app import App

    app = App(site, board, root, sensors, rules)
    log.event("running", "board", board.NAME, "kid", app.kid_hex, "transport", site.transport["type"])
    unload("firmware.boot")
    return app
