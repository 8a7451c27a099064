"""Loads every fixture module in tests/fixtures as a plugin, so that each
part of the suite keeps its fixtures (broker, modem, MicroPython) in one file."""
import pathlib

pytest_plugins = sorted(
    "tests.fixtures." + path.stem
    for path in pathlib.Path(__file__).with_name("fixtures").glob("*.py")
    if path.stem != "__init__"
)
