"""Loads every fixture module in tests/fixtures as a plugin, so that each
part of the suite keeps its fixtures (broker, modem, MicroPython) in one file,
and marks the files that spend their time waiting (`waits`), which
tools/test-lanes runs beside the rest."""
import pathlib

import pytest

pytest_plugins = sorted(
    "tests.fixtures." + path.stem
    for path in pathlib.Path(__file__).with_name("fixtures").glob("*.py")
    if path.stem != "__init__"
)

# Files whose wall time is mostly waiting rather than computing: simulated boards asleep for
# hours of scenario time at --speed, the demo's scenarios in wall time, a broker dead for a
# minute, hub workers and gateways waiting on PostgreSQL and Mosquitto. `make test` runs them
# in a lane of their own beside the rest (tools/test-lanes), so two cores stay busy.
WAITS = {"test_time_to_warning.py", "test_demo.py", "test_firmware_boards.py", "test_city_kills.py",
         "test_city_tier.py", "test_hub_alerts.py"}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.name in WAITS:
            item.add_marker(pytest.mark.waits)
