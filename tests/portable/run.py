"""Runs the portable protocol tests under MicroPython, where pytest cannot go.

    micropython -X heapsize=131072 tests/portable/run.py [test_module ...]

With no argument it runs every tests/portable/test_*.py. Each callable named
test_* runs on its own, with a garbage collection before it, so a MemoryError
at a board-sized heap is reported against the test that caused it. The last
line is "N passed, M failed"; the exit status is 1 when anything failed.
It runs under CPython too, without the heap figures.
"""
import gc
import os
import sys


def _parent(path):
    cut = path.rfind("/")
    if cut < 0:
        return "."
    if cut == 0:
        return "/"
    return path[:cut]


def _here():
    path = sys.argv[0]
    if not path.startswith("/"):
        path = os.getcwd() + "/" + path
    return _parent(path)


HERE = _here()
ROOT = _parent(_parent(HERE))
PACKAGE = "tests.portable"


def _heap():
    """Bytes in use on the heap, or -1 where the port cannot tell (CPython)."""
    if hasattr(gc, "mem_alloc"):
        return gc.mem_alloc()
    return -1


def _report(label, exc):
    print("FAIL %s: %r" % (label, exc))
    if hasattr(sys, "print_exception"):
        sys.print_exception(exc)
    else:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__)


def module_names(argv):
    names = []
    for arg in argv:
        name = arg.split("/")[-1]
        if name.endswith(".py"):
            name = name[:-3]
        names.append(name.split(".")[-1])
    if names:
        return names
    for entry in sorted(os.listdir(HERE)):
        if entry.startswith("test_") and entry.endswith(".py"):
            names.append(entry[:-3])
    return names


def run_module(name, tally):
    """Runs the tests of one module.

    tally is [passed, failed, peak, peak test, most kept]: peak is the most
    heap in use seen right after a test, garbage included, and most kept the
    most still in use once the garbage of a test was collected.
    """
    full = PACKAGE + "." + name
    gc.collect()
    try:
        __import__(full)
        module = sys.modules[full]
    except Exception as exc:
        tally[1] += 1
        _report(full + " (import)", exc)
        return
    for attr in sorted(dir(module)):
        test = getattr(module, attr)
        if not attr.startswith("test_") or not callable(test):
            continue
        label = name + "." + attr
        gc.collect()
        try:
            test()
        except Exception as exc:
            tally[1] += 1
            _report(label, exc)
        else:
            tally[0] += 1
            print("ok   " + label)
        used = _heap()
        if used > tally[2]:
            tally[2] = used
            tally[3] = label
        gc.collect()
        tally[4] = max(tally[4], _heap())


def main(argv):
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    tally = [0, 0, -1, "", -1]
    gc.collect()
    for name in module_names(argv):
        run_module(name, tally)
    gc.collect()
    if tally[2] >= 0:
        print("heap: %d bytes; peak seen %d in use (after %s), at most %d kept after collection"
              % (gc.mem_alloc() + gc.mem_free(), tally[2], tally[3], tally[4]))
    print("%d passed, %d failed" % (tally[0], tally[1]))
    return tally[1] == 0


if __name__ == "__main__":
    if not main(sys.argv[1:]):
        sys.exit(1)
