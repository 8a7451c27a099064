"""Values in SMS texts read as people expect, small structural ones included."""
import pytest

from huaico.alerts.templates import format_value


@pytest.mark.parametrize("value, unit, text", [
    (42.5, "mm", "42.5 mm"),
    (1.85, "m", "1.85 m"),
    (0, "mm", "0 mm"),
    (0.000123, "/", "0.000123"),
    (0.0012, "m", "0.0012 m"),
    (-0.5, "deg", "-0.5 deg"),
])
def test_format_value(value, unit, text):
    assert format_value("above", value, unit) == text
