"""Run the real firmware on a simulated board under the MicroPython unix port.

    micropython -X heapsize=190000 firmware/sim/run.py --site site.json \
        --scenario firmware/scenarios/storm.json --flash /tmp/board1 \
        [--uart tcp:127.0.0.1:PORT | --uart tcp-listen:PORT | --uart pty:/dev/pts/N | --mqtt HOST:PORT] \
        [--speed 60] [--board pico_w] [--micropython 1.26.1]

--flash is the board's filesystem: the runner writes site.json there (with
--board/--uart/--mqtt applied) and the firmware keeps its ring in it, so a
second run on the same directory is the same board powered on again.
--uart tcp:H:P connects to a TCP server that carries the raw byte stream
(socat, or a test's gateway peer); tcp-listen:P waits for the gateway to
connect (pyserial's socket://127.0.0.1:P); pty: opens a pty slave (raw).
--speed K: sleeps run K times faster than real time (see vtime.py for what
the gateway then sees). Output: JSON lines, the firmware's ("ms") and the
simulator's ("vt"): sim_start, tip, link, reset, boot, frame, sent, ack,
retry, hang, sim_end with tips, resets and heap figures, and energy: the
board's mAh per day, awake and radio-on shares and seconds per part and
state (firmware/sim/energy_model.py). Exit status 0 at
the scenario's end, 2 when the firmware refused the config (or the board's
MicroPython release), 3 when the board hung (a lock-up the port really has:
firmware/sim/ports/). --micropython X.Y.Z: the release the board runs (the
newest its board file supports by default); the strict model follows it.

This process is the board's hardware (runner.py); the firmware runs in a
second micropython with the same -X heapsize, started as `run.py --mcu
SOCKET` at each boot (mcu.py), so its heap holds the firmware and not the
simulator.
"""
import os
import sys


def _parent(path):
    cut = path.rfind("/")
    return "." if cut < 0 else (path[:cut] or "/")


_here = sys.argv[0] if sys.argv[0].startswith("/") else os.getcwd() + "/" + sys.argv[0]
ROOT = _parent(_parent(_parent(_here)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

if sys.argv[1:2] == ["--mcu"]:
    from firmware.sim.mcu import main  # noqa: E402

    main(sys.argv[2])
else:
    from firmware.sim.runner import main  # noqa: E402

    main()
