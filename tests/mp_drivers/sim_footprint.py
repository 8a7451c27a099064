"""Prints the heap the simulated board itself holds in a driver check's process.

A driver check runs the device models and the simulated peripherals in the
same MicroPython heap as the drivers; on a board those are silicon. The test
gives each check a plain ESP32's 100 KB plus this figure, measured in the same
run, so the drivers get the board's share and no more."""
import gc

gc.collect()
before = gc.mem_alloc()
import harness  # noqa: E402,F401  (installs the simulated board, peripherals preloaded)

gc.collect()
print(gc.mem_alloc() - before)
