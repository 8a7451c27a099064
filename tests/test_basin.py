"""k-of-n and basin-mean rules against a direct recomputation."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from huaico.rules.basin import BasinError, basin_mean, check, k_of_n


def test_worked_example():
    assert k_of_n([2, 1, 3, None], 2) == (2, False)
    assert k_of_n([None, 3, None, -1], 2) == (-1, False)
    assert k_of_n([None, 3, None, None], 2) == (-1, True)
    assert basin_mean([10.0, None, 20.0]) == (15.0, 2)
    assert basin_mean([None]) == (None, 0)


@settings(max_examples=500, deadline=None)
@given(levels=st.lists(st.one_of(st.none(), st.integers(-1, 3)), min_size=1, max_size=12),
       data=st.data())
def test_k_of_n_equals_counting_gauges_at_each_level(levels, data):
    k = data.draw(st.integers(1, len(levels)))
    level, short = k_of_n(levels, k)
    known = [lv for lv in levels if lv is not None]
    assert short == (len(known) < k)
    expected = -1
    for candidate in range(4):
        if sum(1 for lv in known if lv >= candidate) >= k:
            expected = candidate
    assert level == (-1 if short else expected)


@pytest.mark.parametrize("k, n", [(0, 3), (4, 3), (1.5, 3), (1, 0)])
def test_bad_k_of_n_is_refused(k, n):
    with pytest.raises(BasinError, match="k of n"):
        check(k, n)
