"""The simulated board's hardware, in the process started as firmware/sim/run.py.

It answers the firmware's process (firmware/sim/mcu.py) over
firmware/sim/rpc.py: it makes the peripherals the firmware's machine proxy
asks for (firmware/sim/peripherals.py: Pin, ADC, I2C, SoftI2C, UART, OneWire)
on the wiring of bus.py, keeps the RTC memory and watchdog scratch registers
(board.py), and spends the firmware's sleeps: it runs the scenario up to the
wake time, in real time divided by the speed, and answers at each pin edge
so that the IRQ handler runs in the firmware's process at that instant. It
keeps the flash chip (firmware/sim/flashchip.py) and answers the firmware's
block device before each erase and program. It keeps the board's energy
bookkeeping (firmware/sim/energy_model.py): the MCU's state from the firmware's
sleeps, the radio's from the firmware's network module.
"""
import time

from firmware.sim import board, bus, currents, energy, flashchip, hwclock, io, peripherals, rpc

# What the MCU does during an idle request: machine's light or deep sleep, or time.sleep (awake).
_MCU_STATE = {None: "idle", "light": "light", "deep": "deep"}


class Hardware:
    def __init__(self, scenario, speed, chip):
        self.scenario = scenario
        self.chip = chip
        scenario.chip = chip
        chip.clock = self.virtual_s
        if scenario.flash_time:
            chip.step_us = flashchip.STEP_US[scenario.flash_time]
        chip.uarts = lambda: [o for o in self.objects if hasattr(o, "irqs_off")]
        self.speed = speed
        self.v_us = 0  # scenario time, microseconds since the first power-on
        self.hello = {}  # what a new firmware process is told (runner.py fills it)
        self.objects = []  # peripherals of the running firmware process, by handle
        self.edges = []  # [handle, flags] of pin edges not yet told
        self.rules = None  # the board's port rules (firmware/sim/ports), set by runner.py
        self.wiring = None  # the board file: where its buses' cables are

    def power_on(self):
        """A new firmware process: none of the old one's peripherals answer any more."""
        self.objects = []
        self.edges = []
        io.forget_pins()
        e = energy.model
        if e is not None:  # a new boot: GPIOs float, the radio is down, the CPU runs
            e.release_pins(self.v_us)
            energy.change("wifi", "off", self.v_us)
            e.set("mcu", "active", self.v_us)

    def serve(self, conn):
        """Answer the firmware's process until its last message (reset, end, refused or hang), returned."""
        while True:
            message = rpc.recv(conn, self.objects)
            if message[0] in ("reset", "end", "refused", "hang"):
                return message
            hwclock.reach(message.pop())  # the firmware's time when it asked (rpc.py)
            try:
                reply = [0, self.answer(message)]
            except Exception as exc:  # a bus error, a dead sensor: the firmware's to handle
                reply = [1, type(exc).__name__, list(exc.args)]
            reply.append(hwclock.now_us())
            rpc.send(conn, reply)

    def answer(self, message):
        op = message[0]
        if op == "call":
            return getattr(self.objects[message[1]], message[2])(*message[3])
        if op == "into":
            args = message[3]
            buf = bytearray(args[-1])
            getattr(self.objects[message[1]], message[2])(*(args[:-1] + [buf]))
            return buf
        if op == "idle":
            return self.idle(message[1], message[2], message[3])
        if op == "power":  # the firmware's network module: [part, state, at_us, packets sent]
            if message[4]:
                energy.charge(message[1], message[2], message[3], message[4] * currents.WIFI_TX_US)
            else:
                energy.change(message[1], message[2], message[3])
            return None
        if op == "new":
            args, kwargs = self.rules.new(message[1], message[2], message[3], self.wiring)
            pin = io.made(args[0]) if message[1] == "Pin" else None
            if pin is not None:
                # One pad, one Pin (both ports' machine_pin_find returns the pin's one object):
                # Pin(id) again keeps its mode, pull, level and IRQ unless it sets them.
                pin.init(*args[1:], **kwargs)
                self.objects.append(pin)
            else:
                self.objects.append(getattr(peripherals, message[1])(*args, **kwargs))
            return len(self.objects) - 1
        if op == "irq":
            self.rules.irq(message[3])
            self.objects[message[1]].irq(self._edge_to(message[1]), message[2])
            return None
        if op == "pulse":
            return io.time_pulse_us(self.objects[message[1]], message[2], message[3])
        if op == "rtc":
            if message[1] is None:
                return board.state["rtc_memory"]
            board.state["rtc_memory"] = bytes(message[1])
            return None
        if op == "mem32":
            if len(message) == 2:
                return board.scratch.get(message[1], 0)
            board.scratch[message[1]] = message[2]
            return None
        if op == "sleep":
            pin, level = message[3]
            now = None if pin is None else self.objects[pin].value() == level
            return self.rules.sleep(message[1], message[2], now)
        if op == "wdt":
            self.rules.wdt(message[1], message[2])
            return None
        if op == "ext0":
            self.rules.ext0_pin(self.objects[message[1]].id)
            return None
        if op == "wake":
            board.state["wake"] = message[1]
            return None
        if op == "flash":
            return self.flash_step(message[1], message[2], message[3], message[4])
        if op == "hello":
            hwclock.sync(self.v_us)  # the device models' time starts where the firmware's does
            return self.hello
        raise ValueError("unknown request %r" % (op,))

    def flash_step(self, op, block, offset, length):
        """An erase or program of the chip (flashchip.gate), then [bytes written, pin edges]
        ([handle, flags, scenario us, level] each, as idle() tells them): where the port runs
        a pin IRQ as soon as the step ends, the edges that came by then. rp2 turns interrupts
        off for each erase or program alone and back on after it (ports/rp2/rp2_flash.c:
        v1.22.0 MICROPY_END_ATOMIC_SECTION, v1.23.0-v1.28.0 end_critical_flash_section's
        restore_interrupts), so a hard IRQ held through a step runs at its end, before the
        next step: not at the firmware's next sleep, after the whole commit. Edges within the
        step are one IRQ per pin at its end (the GPIO's latched events, ports/rp2/machine_pin.c
        gpio_irq, v1.22.0-v1.28.0), whose handler reads the pin as it is then. An edge before
        the step, with interrupts on, had its handler run at once: it goes with its own time
        and level. Edges the firmware's own pin writes made (a power group's rail) wait for
        the sleep, as before, and so does everything but pin edges."""
        start = hwclock.now_us()
        n = self.chip.gate(op, block, offset, length)
        if self.chip.cut is not None or self.edges or not self.rules.port.PIN_IRQ_AFTER_FLASH_STEP:
            return [n, []]
        end = hwclock.now_us()
        scenario = self.scenario
        while True:
            nxt = scenario.next_edge_us()
            if nxt is None or nxt > end:
                break
            if nxt > self.v_us:
                self.v_us = nxt
            scenario.fire(self.v_us)
        edges = []
        for edge in self.edges:
            if edge[2] < start:
                edges.append(edge)
                continue
            for held in edges:
                if held[0] == edge[0] and held[2] == end:
                    held[1] |= edge[1]
                    break
            else:
                edges.append([edge[0], edge[1], end, self.objects[edge[0]].value()])
        self.edges = []
        if edges:
            print("DBGSTEP", op, start, end, edges)
        return [n, edges]

    def _edge_to(self, handle):
        def edge(pin):
            # When the edge happened: a model that knows says (bus.edge_us), else now. And the
            # pin's level just after it: a hard handler runs at its edge on a board and reads
            # the pin then, though the firmware's process hears of the edge later, after
            # more edges may have come (machine._run).
            at = bus.edge_us[0]
            self.edges.append([handle, pin.irq().flags(), self.v_us if at is None else at, pin.value()])
        return edge

    def idle(self, now_us, limit_us, how=None):
        """The firmware sleeps (`how`: "light", "deep", None for time.sleep) from now_us to
        limit_us: deliver the scenario's events until then, or until one makes a pin edge.
        [scenario time, edges, link down, control] where control is None, [cause, power]
        for a reset, or "end"."""
        if now_us > self.v_us:
            self.v_us = now_us
        e = energy.model
        if e is not None:
            e.settle(now_us)
            e.set("mcu", _MCU_STATE[how], now_us)
            if how is not None and self.rules.name == "esp32":
                # esp32 light and deep sleep power the radio down (ESP-IDF "Sleep Modes"),
                # and deep sleep lets the GPIOs go (no hold): every power group is off.
                e.pause("wifi", now_us)
                if how == "deep":
                    e.release_pins(now_us)
        scenario = self.scenario
        control = None
        io.gated[0] = how == "light" and self.rules.name == "esp32"  # esp32.PCNT counts nothing then
        try:
            while not self.edges:
                nxt = scenario.next_us()
                if nxt is None or nxt > limit_us:
                    self._sleep_to(limit_us)
                    break
                self._sleep_to(nxt)
                scenario.fire(self.v_us)
        except board.Reset as r:
            control = [r.cause, r.power]
        except board.ScenarioEnd:
            control = "end"
        io.gated[0] = False
        edges = self.edges
        self.edges = []
        if edges:
            print("DBGIDLE", now_us, limit_us, self.v_us, edges)
        hwclock.sync(self.v_us)
        if e is not None:
            e.set("mcu", "active", self.v_us)
            e.resume(self.v_us)
        return [self.v_us, edges, board.state["link_down"], control]

    def _sleep_to(self, v_us):
        wait = (v_us - self.v_us) / self.speed
        if wait >= 1:
            time.sleep_us(int(wait))
        if v_us > self.v_us:
            self.v_us = v_us

    def virtual_s(self):
        """Scenario seconds since the simulated board first powered on."""
        return self.v_us / 1000000
