"""The board's main loop: sample, commit each round to flash as a frame, send until acked, sleep.

Each sampling round becomes one frame committed to the ring at once, so a
reading never waits in RAM for a report; reporting only decides when the
ring is sent. Rain tips are the one thing counted in RAM (by the gauge's
IRQ): the loop keeps the untaken count in retained memory (see
retained.py), so a watchdog or soft reset does not lose them; the gateway's
time is kept there too, so frames after a reset are stamped right.

The watchdog is fed in one place, health(), at the top of each loop, and
catches a hang anywhere. A board that is sick (heap below a floor, the link
stuck) resets itself with machine.reset(): a watchdog left to starve would
fire in lightsleep, where an RP2040 locks up until power is cycled and an
RP2350's watchdog does not count at all (micropython #17228, #17229, on
every release to v1.28.0). The ring resends what was not acked.
Every wait in the loop is bounded; config.check() proves at boot that one
loop fits in the watchdog's timeout.
"""
import gc
import random
import time

import machine
from protocol.cose import MacKey
from protocol.errors import FrameError
from protocol.frame import (FLAG_CLOCK_UNSYNCED, FLAG_DROPPED, FLAG_LOW_BATTERY, FLAG_REBOOTED,
                            Q_OK, decode_ack, encode_frame)

from firmware import log
from firmware.flash import Flash
from firmware.retained import NONE, Retained
from firmware.ring import Ring, StoreError

_RAIN_TIPS = 2  # protocol/channels.py "rain_tips"
_BATTERY = 19  # protocol/channels.py "battery", mV
_HEAP_FLOOR = 6144  # below this the board is sick: let the watchdog restart it
_ACK_POLL_MS = 10
_JOIN_POLL_MS = 250  # awake while Wi-Fi joins: an ESP32 that sleeps loses the join (mqttlink.py)
_STUCK_S = 3600  # link up but no ack for this long: a wedged radio, reset
_QUIET_MS = 0x3FFFFFFF  # "no report for as long as it takes": below low_v until a rule holds


class Rule:
    """A local threshold: while it holds, report at once and then every report_ms.
    Made at boot (firmware/boot.py) with its thresholds in the channel's integer units."""

    def __init__(self, spec):
        self.sensor, self.code, self.index, self.above, self.below, self.clear, self.report_ms = spec
        self.active = False

    def update(self, value):
        """True when this reading makes the rule start holding."""
        if self.active:
            if self.above is not None:
                self.active = value >= self.clear
            else:
                self.active = value <= self.clear
            return False
        if (self.above is not None and value >= self.above) or (self.below is not None and value <= self.below):
            self.active = True
            return True
        return False


class App:
    def __init__(self, site, board, root, sensors, rules):
        self.site = site
        self.board = board
        self.kid_hex = "".join("%02x" % b for b in site.kid)
        self.retained = Retained(board)
        self.sensors = sensors
        self.rain = [s for s in self.sensors if hasattr(s, "pending")]
        flash = Flash(root + "/ring")
        self.epoch = _epoch(flash, flash.read("meta") is None)
        self.ring = Ring(flash, site.ring_frames, site.seq_block)
        self.synced = False
        self.offset = 0
        self._restore()
        self.key = MacKey(site.key)
        self.rules = [Rule(spec) for spec in rules]
        t = site.transport
        self.t = t
        self.wifi = t["type"] == "mqtt"
        if self.wifi:
            from firmware.mqttlink import MqttLink
            self.link = MqttLink(self.kid_hex, t)
        else:
            from firmware.uartlink import UartLink
            self.link = UartLink(board, t, site.groups.get(t.get("power")))
        self.wdt = machine.WDT(timeout=site.watchdog_ms)
        now = time.ticks_ms()
        self.due = [now for _ in self.sensors]
        self.next_send = now
        self.retry_ms = t["retry_s"] * 1000
        self.report_now = True
        self.rebooted = True
        self.sick_since = None  # ticks_ms since the board is unhealthy
        self.battery_mv = -1
        self.slower = 1  # the battery step's (config battery.steps): intervals and retries this many times longer
        self.last_ack = now
        self.bad_acks = 0
        self.store_errors = 0
        self.sent = 0

    def _restore(self):
        """Tips and the gateway's time from before a reset (retained.py)."""
        pending, seq, taken, clock = self.retained.load()
        if seq != NONE and self.ring.get(seq) is None:
            pending += taken  # the frame with these tips never reached flash
        if pending and self.rain:
            self.rain[0].restore(pending)
        if clock is not None:
            self._set_time(clock if self.retained.rtc_runs else clock - time.time())
        log.event("restored", "tips", pending, "frames", len(self.ring), "dropped", self.ring.dropped,
                  "synced", self.synced)

    def _set_time(self, offset):
        self.offset = offset
        self.synced = True
        self.retained.clock = offset if self.retained.rtc_runs else None

    def rain_pending(self):
        n = 0
        for s in self.rain:
            n += s.pending()
        return n

    def now_s(self):
        return time.time() + self.offset

    def low_battery(self):
        return 0 <= self.battery_mv < self.site.low_battery_mv

    def quiet(self):
        """Below battery.low_v the radio is spared, unless a local rule holds: a warning
        always goes out."""
        return self.low_battery() and not self.fast_ms()

    def battery_step(self):
        """Take the step (config battery.steps) the last battery reading falls in: the
        deepest whose below_v it is under. Tips are counted whatever the step (the
        gauge's IRQ), and a rule that holds keeps its own pace."""
        slower = 1
        for below_mv, step_slower in self.site.battery_steps:  # deepest first
            if 0 <= self.battery_mv < below_mv:
                slower = step_slower
                break
        if slower != self.slower:
            log.event("battery_step", "mv", self.battery_mv, "slower", slower)
        self.slower = slower

    def _slower(self):
        return 1 if self.fast_ms() else self.slower

    # One loop.
    def run(self, loops=-1):
        while loops:
            loops -= 1
            self.health()
            now = time.ticks_ms()
            self.sample(now)
            self.service(now)
            self.save()
            gc.collect()
            self.sleep()

    def save(self, seq=NONE, taken=0):
        """Untaken tips and the time into retained memory (rp2 keeps the time itself)."""
        if self.synced and not self.retained.rtc_runs:
            self.retained.clock = self.now_s()
        self.retained.save(self.rain_pending(), seq, taken)

    def health(self):
        """Feed the watchdog; reset the board once it has been sick for a watchdog period
        (a passing low heap right after boot is not sickness: the loop's collect follows)."""
        self.wdt.feed()
        now = time.ticks_ms()
        free = gc.mem_free()
        stuck = len(self.ring) and time.ticks_diff(now, self.last_ack) > _STUCK_S * 1000
        if free >= _HEAP_FLOOR and not stuck:
            self.sick_since = None
            return
        log.event("unhealthy", "free", free, "stuck", bool(stuck))
        if self.sick_since is None:
            self.sick_since = now
        elif time.ticks_diff(now, self.sick_since) >= self.site.watchdog_ms:
            self.save()
            machine.reset()

    def fast_ms(self):
        """The shortest report_s of the rules that hold now, or 0."""
        fast = 0
        for rule in self.rules:
            if rule.active and (not fast or rule.report_ms < fast):
                fast = rule.report_ms
        return fast

    def sample(self, now):
        due = False
        for at in self.due:
            if time.ticks_diff(now, at) >= 0:
                due = True
        if not due:
            return
        fast = self.fast_ms()
        slower = self.slower  # a battery step taken in this round applies from the next
        readings = []
        taken = 0
        for i in range(len(self.sensors)):
            if time.ticks_diff(now, self.due[i]) < 0:
                continue
            s = self.sensors[i]
            for code, index, value, quality in s.read():
                readings.append((code, index, 0, value, quality))
                if code == _RAIN_TIPS:
                    taken += value
                if code == _BATTERY and quality == Q_OK:
                    self.battery_mv = value
                    self.battery_step()
                self._check_rules(s.name, code, index, value)
            interval = s.interval_s * 1000
            if s not in self.rain:
                interval *= slower  # the gauge counts tips anyway: its frames keep their pace
            if fast and fast < interval:
                interval = fast
            self.due[i] = time.ticks_add(now, interval)
        self.commit(readings, taken)

    def _check_rules(self, name, code, index, value):
        for rule in self.rules:
            if rule.sensor == name and rule.code == code and rule.index == index:
                was = rule.active
                if rule.update(value):
                    self.report_now = True
                    log.event("alarm", "sensor", name, "channel", code, "value", value)
                elif was and not rule.active:
                    log.event("clear", "sensor", name, "channel", code, "value", value)

    def commit(self, readings, taken):
        flags = 0
        if not self.synced:
            flags |= FLAG_CLOCK_UNSYNCED
        if self.rebooted:
            flags |= FLAG_REBOOTED
        if self.ring.take_drop_flag():
            flags |= FLAG_DROPPED
        if self.low_battery():
            flags |= FLAG_LOW_BATTERY
        seq = -1
        try:
            seq = self.ring.next_seq()
            data = encode_frame(self.site.kid, self.key, seq, self.now_s(), flags, readings, self.epoch)
            if taken:
                # Should a reset hit before the frame is in flash, these tips come back.
                self.save(seq, taken)
            self.ring.put(seq, data)
        except (OSError, StoreError) as exc:
            # Flash full with nothing left to drop, or failing: the loop goes on (an
            # exception here would reset the board before it sends, at every boot).
            # This round's readings are lost; its tips go back to the gauge unless
            # their frame made it to flash after all.
            self.store_errors += 1
            if taken and (seq < 0 or self.ring.get(seq) is None):
                self.rain[0].restore(taken)
            self.save()
            log.event("store_error", "why", str(exc), "seq", seq, "tips", taken)
            return
        self.save()
        self.rebooted = False
        log.event("frame", "seq", seq, "n", len(readings), "bytes", len(data), "tips", taken,
                  "flags", flags, "ring", len(self.ring))

    def service(self, now):
        for data in self.link.poll():
            self.on_ack(data)
        if self.quiet():
            self.link.rest(_QUIET_MS)  # no report until a rule holds: a radio left on goes off
            return
        if not len(self.ring):
            return
        if not self.report_now and time.ticks_diff(now, self.next_send) < 0:
            return
        self.report_now = False
        if not self.link.up(now):
            if self.wifi and self.link.joining(now):
                self.next_send = time.ticks_add(now, _JOIN_POLL_MS)  # not a failure: look again soon
                return
            self._backoff(now, "link_down")
            self._rest(now)
            return
        # Wait for the acks of the frames that went out, not of those the link held back
        # (a LoRa duty cycle): the radio stays on only for acks that can come.
        wanted = []
        for seq in self.ring.oldest(self.t["burst"]):
            data = self.ring.get(seq)
            if data is None:
                continue
            if not self.link.send(data):
                break
            wanted.append(seq)
            self.sent += 1
            log.event("sent", "seq", seq)
        deadline = time.ticks_add(time.ticks_ms(), self.t["ack_timeout_ms"])
        while time.ticks_diff(deadline, time.ticks_ms()) > 0:
            for data in self.link.poll():
                self.on_ack(data)
            if not _any_in(wanted, self.ring):
                break
            if self.wifi:
                self.link.wait(_ACK_POLL_MS)  # awake on the socket: the ack comes in real time
            else:
                time.sleep_ms(_ACK_POLL_MS)
        if _any_in(wanted, self.ring):
            # What came during the last wait: the radio goes off next (rest), and a Wi-Fi
            # board's unread acks would wait at the broker for its next join.
            for data in self.link.poll():
                self.on_ack(data)
        if _any_in(wanted, self.ring):
            self._backoff(now, "no_ack")
            self._rest(now)
            return
        self.retry_ms = self.t["retry_s"] * 1000
        if len(self.ring):
            self.next_send = now  # a backlog: keep going next loop
        else:
            self.next_send = time.ticks_add(now, self.fast_ms() or self.site.report_s * 1000 * self._slower())
        self._rest(now)

    def _rest(self, now):
        """The radio off until the next report: a LoRa module's group down, a Wi-Fi board off
        the network (a late ack waits for it at the broker, mqttlink.py)."""
        self.link.rest(time.ticks_diff(self.next_send, now))

    def _backoff(self, now, why):
        # In a battery step the retries are that many times rarer: fewer radio attempts.
        wait = self.retry_ms * self._slower()
        self.next_send = time.ticks_add(now, wait)
        log.event("retry", "why", why, "in_ms", wait, "ring", len(self.ring))
        self.retry_ms = min(self.retry_ms * 2, self.t["retry_max_s"] * 1000)

    def on_ack(self, data):
        try:
            kid, seq, gateway_time = decode_ack(data, self.key)
        except FrameError as exc:  # AuthError included: a forged or damaged ack drops nothing
            self.bad_acks += 1
            log.event("bad_ack", "why", str(exc))
            return
        if bytes(kid) != self.site.kid:
            self.bad_acks += 1
            log.event("bad_ack", "why", "kid")
            return
        self.last_ack = time.ticks_ms()
        # Gateway time: the clock of record, when the gateway trusts it (else
        # None). Frames say whether they had it.
        if gateway_time is not None:
            self._set_time(gateway_time - time.time())
        seq -= self.epoch << 24  # the ring counts without the epoch (SPEC.md 1.3)
        if (self.epoch == 0 or 0 <= seq < 1 << 24) and self.ring.ack(seq):
            log.event("ack", "seq", seq, "ring", len(self.ring))

    def sleep(self):
        wake = self.due[0] if self.due else time.ticks_add(time.ticks_ms(), self.site.sleep_max_ms)
        for at in self.due:
            if time.ticks_diff(at, wake) < 0:
                wake = at
        if len(self.ring) and not self.quiet() and time.ticks_diff(self.next_send, wake) < 0:
            wake = self.next_send
        ms = time.ticks_diff(wake, time.ticks_ms())
        if ms <= 0:
            return
        if ms > self.site.sleep_max_ms:
            ms = self.site.sleep_max_ms
        mode = self.site.sleep_mode
        if self.wifi and self.link.joining(time.ticks_ms()):
            mode = "none"  # a light or deep sleep would lose the join on an ESP32
        for s in self.rain:
            settle = s.driver.settle_ms()
            if settle and mode != "none":
                # A reed still closed would wake an esp32 at once: stay awake until it opens.
                time.sleep_ms(min(settle, ms))
                return
        if mode == "light":
            machine.lightsleep(ms)  # a tip wakes the board (rain_gauge.py: per port)
            for s in self.rain:
                s.driver.woke()
        elif mode == "deep":
            self.save()
            machine.deepsleep(ms)  # ends in a reset; the ring and seq are in flash
        else:
            time.sleep_ms(ms)


def _epoch(flash, fresh):
    """The store's epoch (protocol/SPEC.md 1.3), drawn once when the store is
    new, so that a re-flashed board's frames are new ones to the gateway; 0
    (version 1 frames) for a store made before epochs, whose ring holds them.
    random is seeded from the hardware at boot (MICROPY_PY_RANDOM_SEED_INIT_FUNC:
    esp_random() in ports/esp32, rosc_random_u32() in ports/rp2, mpconfigport.h)."""
    data = flash.read("epoch")
    if data:
        return data[0]
    if not fresh:
        return 0
    epoch = 1 + random.getrandbits(8) % 255
    flash.write("epoch.tmp", bytes((epoch,)))
    flash.rename("epoch.tmp", "epoch")
    return epoch


def _any_in(wanted, seqs):
    for seq in wanted:
        if seq in seqs:
            return True
    return False
