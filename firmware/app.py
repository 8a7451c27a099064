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

Pacing: the loop sleeps until the next due sample or report, or until the
watchdog must be fed (a wake that only feeds it does nothing else). A tip
ends the sleep (rain_gauge.py: per port), and the rolling rain rules are
judged then, at the tip: one that starts holding commits a frame of every
sensor and reports it at once, whatever the intervals; while rules hold,
the board samples and reports at their pace, and after, at the site's.
"""
import array
import gc
import time

import machine
from protocol.cose import MacKey
from protocol.errors import FrameError
from protocol.frame import (FLAG_CLOCK_UNSYNCED, FLAG_DROPPED, FLAG_LOW_BATTERY, FLAG_REBOOTED,
                            Q_OK, decode_ack, encode_frame)

from firmware import log
from firmware.flash import Flash
from firmware.retained import NONE, Retained
from firmware.ring import COUNTER_MASK, Ring, StoreError

_RAIN_TIPS = 2  # protocol/channels.py "rain_tips"
_BATTERY = 19  # protocol/channels.py "battery", mV
_HEAP_FLOOR = 6144  # below this the board is sick: let the watchdog restart it
_ACK_POLL_MS = 10
_JOIN_POLL_MS = 250  # awake while Wi-Fi joins: an ESP32 that sleeps loses the join (mqttlink.py)
_STUCK_S = 3600  # link up but no ack for this long: a wedged radio, reset
# The sleep ends this long before the watchdog would fire: a wake's path to the feed at the top
# of the loop (firmware/config.py LOOP_MARGIN_MS, which check() counts in every loop).
_WAKE_MARGIN_MS = 1000
# A sleep that a tip cannot end (time.sleep_ms: mode "none", or while Wi-Fi joins) is cut in
# steps this long, each ending early when a tip came: a tip is judged within a step.
_TIP_POLL_MS = 500
_RISE_KEPT = 32  # readings a rise rule keeps (firmware/config.py checks its window fits them)
_QUIET_MS = 0x3FFFFFFF  # "no report for as long as it takes": below low_v until a rule holds


class Rule:
    """A local threshold: while it holds, report at once and then every report_ms.
    Made at boot (firmware/boot.py) with its thresholds in the channel's integer units.

    With window_ms, a rain rule judges the rain of the last window_ms, from the
    gauge's tip times (rain_gauge.py rolling()), at every tip (App.on_tips) as well
    as at each sample; a `rise` rule judges the rise over the window: the reading
    less the lowest reading of the window, from the readings it keeps in arrays
    made here (a fast level sensor, sampled often, so a surge is told at once)."""

    def __init__(self, spec):
        (self.sensor, self.code, self.index, self.above, self.below, self.clear, self.report_ms,
         self.window_ms, self.rise) = spec
        self.active = False
        if self.rise:
            self._ticks = array.array("i", [0] * _RISE_KEPT)
            self._values = array.array("i", [0] * _RISE_KEPT)
            self._kept = 0
            self._next = 0

    def risen(self, value, now):
        """Keep this reading; the rise over the window: it less the window's lowest reading."""
        self._ticks[self._next] = now
        self._values[self._next] = value
        self._next = (self._next + 1) % _RISE_KEPT
        if self._kept < _RISE_KEPT:
            self._kept += 1
        low = value
        at = self._next
        for _ in range(self._kept):
            at = (at - 1) % _RISE_KEPT
            if time.ticks_diff(now, self._ticks[at]) > self.window_ms:
                break
            if self._values[at] < low:
                low = self._values[at]
        return value - low

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
        self.ring = Ring(Flash(root + "/ring"), site.ring_frames, site.seq_block)
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
        self.fed = now  # when the watchdog was last fed: the sleep ends before it would fire
        self.due = [now for _ in self.sensors]
        self.next_send = now
        self.retry_ms = t["retry_s"] * 1000
        self.report_now = True
        self.hurry = False  # a rule started holding: every sensor to its pace (_hurry)
        self.rebooted = True
        self.sick_since = None  # ticks_ms since the board is unhealthy
        self.battery_mv = -1
        self.slower = 1  # the battery step's (config battery.steps): intervals and retries this many times longer
        self.last_ack = now
        self.acked = None  # during a round's ack wait: the frames acked, their files not yet removed
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

    # One loop. A wake with nothing due only feeds the watchdog (and keeps new tips in
    # retained memory): no sampling, no collection, so a long sleep cut into watchdog
    # periods costs a few instructions per period.
    def run(self, loops=-1):
        while loops:
            loops -= 1
            self.health()
            now = time.ticks_ms()
            tipped = self.on_tips(now)
            if self.busy(now):
                self.sample(now)
                self.service(now)
                self.save()
                gc.collect()
            elif tipped:
                self.save()
            self.sleep()

    def save(self, seq=NONE, taken=0):
        """Untaken tips and the time into retained memory (rp2 keeps the time itself)."""
        if self.synced and not self.retained.rtc_runs:
            self.retained.clock = self.now_s()
        self.retained.save(self.rain_pending(), seq, taken)

    def health(self):
        """Feed the watchdog; reset the board once it has been sick for a watchdog period
        (a low heap after a collection, or the link stuck)."""
        self.wdt.feed()
        now = time.ticks_ms()
        self.fed = now
        free = gc.mem_free()
        if free < _HEAP_FLOOR:
            # A wake that only feeds the watchdog does not collect (run()): what it finds
            # may be garbage, and two such wakes a watchdog period apart would reset a
            # healthy board.
            gc.collect()
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

    def busy(self, now):
        """Whether this wake has work: a sensor due, a report due, a Wi-Fi join going on."""
        for at in self.due:
            if time.ticks_diff(now, at) >= 0:
                return True
        if len(self.ring) and not self.quiet() and (
                self.report_now or time.ticks_diff(now, self.next_send) >= 0):
            return True
        return self.wifi and self.link.joining(now)

    def on_tips(self, now):
        """Judge the rolling rain rules at a tip, not at the next sample: a rule that starts
        holding makes every sensor due now and the report immediate. True when tips came."""
        tipped = False
        for s in self.rain:
            if not s.driver.took_fresh():
                continue
            tipped = True
            for rule in self.rules:
                if rule.window_ms and not rule.rise and rule.sensor == s.name:
                    self._judge(rule, s.name, s.driver.rolling(rule.code, rule.window_ms))
        if self.hurry:
            self._hurry(now)  # this wake's frame carries the tip that crossed, and every sensor
        return tipped

    def _tip_waiting(self):
        for s in self.rain:
            if s.driver.fresh:
                return True
        return False

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
                self._check_rules(s, code, index, value, quality, now)
            interval = s.interval_s * 1000
            if s not in self.rain:
                interval *= slower  # the gauge counts tips anyway: its frames keep their pace
            if fast and fast < interval:
                interval = fast
            self.due[i] = time.ticks_add(now, interval)
        if self.hurry:
            self._hurry(time.ticks_add(now, self.fast_ms()))
        self.commit(readings, taken)

    def _hurry(self, at):
        """A rule started holding: every sensor due by `at`, so that all of them take the rule's
        pace together, and go back to dry-weather pacing together (one frame a round, not one
        per sensor out of step) when it clears."""
        self.hurry = False
        for i in range(len(self.due)):
            if time.ticks_diff(self.due[i], at) > 0:
                self.due[i] = at

    def _check_rules(self, s, code, index, value, quality, now):
        """The rules on this reading: a rolling rule on the gauge's window, a rise rule on the
        rise over its window (of good readings only: a dropout is no surge)."""
        for rule in self.rules:
            if rule.sensor == s.name and rule.code == code and rule.index == index:
                if rule.rise:
                    if quality != Q_OK:
                        continue
                    value = rule.risen(value, now)
                elif rule.window_ms:
                    value = s.driver.rolling(code, rule.window_ms)
                self._judge(rule, s.name, value)

    def _judge(self, rule, name, value):
        """Update one rule; True when it starts holding (the report goes at once)."""
        was = rule.active
        if rule.update(value):
            self.report_now = True
            self.hurry = True
            log.event("alarm", "sensor", name, "channel", rule.code, "value", value)
            return True
        if was and not rule.active:
            log.event("clear", "sensor", name, "channel", rule.code, "value", value)
        return False

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
            data = encode_frame(self.site.kid, self.key, seq & COUNTER_MASK, self.now_s(), flags, readings,
                                self.ring.epoch_of(seq))
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
        held = len(self.ring)
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
        # The files of frames acked meanwhile are removed only once the wait is over: an rp2
        # erases flash with interrupts off (ports/rp2/rp2_flash.c), and the acks that arrive during
        # an erase are lost past the UART's 32-byte FIFO, each costing an ack timeout. A reset
        # before the removal leaves the file: the frame is sent again and acked as a duplicate.
        acked = self.acked = []
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
        self.acked = None
        for seq in acked:
            self.ring.remove_file(seq)
        if _any_in(wanted, self.ring):
            if len(self.ring) < held:
                # Some acks came, the rest were lost on the line (an rp2 flash step runs with
                # interrupts off: sim/uart.py): resend at once, no backoff.
                self.next_send = now
                return
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
        seq = self.ring.from_wire(seq)  # the ring numbers past 2^24 without the epoch (ring.py)
        if seq < 0:
            return
        if self.acked is None:
            acked = self.ring.ack(seq)
        else:
            acked = self.ring.forget(seq)
            if acked:
                self.acked.append(seq)
        if acked:
            log.event("ack", "seq", seq, "ring", len(self.ring))

    def sleep(self):
        """Sleep until the next due sample or report, a tip, or the watchdog's next feed,
        whichever is first: no other cap (the site's sleep.max_ms, when set, is one more)."""
        now = time.ticks_ms()
        mode = self.site.sleep_mode
        if self.wifi and self.link.joining(now):
            mode = "none"  # a light or deep sleep would lose the join on an ESP32
        # A deep sleep ends in a reset, and the watchdog starts again with the boot.
        ms = 86400000
        if mode != "deep":
            ms = self.site.watchdog_ms - time.ticks_diff(now, self.fed) - _WAKE_MARGIN_MS
        for at in self.due:
            ms = min(ms, time.ticks_diff(at, now))
        if len(self.ring) and not self.quiet():
            ms = min(ms, 0 if self.report_now else time.ticks_diff(self.next_send, now))
        if self.site.sleep_max_ms:
            ms = min(ms, self.site.sleep_max_ms)
        # A tip while the loop worked is judged first. (One in the instructions between here
        # and the sleep is counted, and judged at the next wake, within a watchdog period.)
        if ms <= 0 or self._tip_waiting():
            return
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
            self._nap(ms)

    def _nap(self, ms):
        """time.sleep_ms, which no IRQ ends, in steps that end once a tip came."""
        end = time.ticks_add(time.ticks_ms(), ms)
        while not self._tip_waiting():
            left = time.ticks_diff(end, time.ticks_ms())
            if left <= 0:
                return
            time.sleep_ms(min(left, _TIP_POLL_MS))


def _any_in(wanted, seqs):
    for seq in wanted:
        if seq in seqs:
            return True
    return False
