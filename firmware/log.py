"""Event lines on the console: one JSON object per line, for people and for tools.

On a board they show on the USB console (mpremote); on the simulated board
the tests and `huaico demo` read them from stdout. Every line has "ev" and
"ms" (the board's tick counter).
"""
import json
import time


def event(name, *pairs):
    """Print {"ev": name, "ms": ticks, key: value, ...}; pairs alternate key, value."""
    parts = ['{"ev":"', name, '","ms":', str(time.ticks_ms())]
    for i in range(0, len(pairs) - 1, 2):
        parts.append(',"')
        parts.append(pairs[i])
        parts.append('":')
        parts.append(json.dumps(pairs[i + 1]))
    parts.append("}")
    print("".join(parts))
