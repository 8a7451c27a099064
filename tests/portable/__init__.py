"""Protocol tests that run unchanged under MicroPython (tests/portable/run.py) and pytest."""
