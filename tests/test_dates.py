"""Calendar arithmetic of relative dates and windows: months and years clip the day to the month's length."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acrm_pipelines.segments.dates import relative, window_start
from acrm_pipelines.segments.spec import Window
from tests.reference.segments import add_months


@pytest.mark.parametrize(
    ("value", "as_of", "expected"),
    [
        ("-1M", date(2024, 3, 31), date(2024, 2, 29)),
        ("-1M", date(2025, 3, 31), date(2025, 2, 28)),
        ("+1M", date(2024, 1, 31), date(2024, 2, 29)),
        ("-13M", date(2024, 1, 15), date(2022, 12, 15)),
        ("+1y", date(2024, 2, 29), date(2025, 2, 28)),
        ("-4y", date(2024, 2, 29), date(2020, 2, 29)),
        ("+0M", date(2024, 5, 31), date(2024, 5, 31)),
        ("-90d", date(2024, 3, 31), date(2024, 1, 1)),
        ("-2w", date(2024, 3, 1), date(2024, 2, 16)),
        ("today", date(2024, 3, 1), date(2024, 3, 1)),
    ],
)
def test_relative(value: str, as_of: date, expected: date) -> None:
    assert relative(value, as_of) == expected


@pytest.mark.parametrize(
    ("window", "as_of", "expected"),
    [
        # The window ends at the end of the as-of day: 30 Mar 24:00 − 1 month = 29 Feb 00:00 (2024), 28 Feb (2025).
        (Window(n=1, unit="M"), date(2024, 3, 30), datetime(2024, 2, 29)),
        (Window(n=1, unit="M"), date(2025, 3, 30), datetime(2025, 2, 28)),
        (Window(n=3, unit="M"), date(2024, 3, 31), datetime(2024, 1, 1)),
        (Window(n=1, unit="y"), date(2024, 2, 28), datetime(2023, 2, 28)),  # 29 Feb 2024 − 1 year
        (Window(n=1, unit="y"), date(2024, 2, 27), datetime(2023, 2, 28)),
        (Window(n=24, unit="h"), date(2024, 3, 1), datetime(2024, 3, 1)),
    ],
)
def test_window_start(window: Window, as_of: date, expected: datetime) -> None:
    assert window_start(window, as_of) == expected


@given(
    st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31)),
    st.integers(min_value=-2400, max_value=2400),
)
def test_months_and_years_match_the_reference(as_of: date, n: int) -> None:
    sign = "-" if n < 0 else "+"
    assert relative(f"{sign}{abs(n)}M", as_of) == add_months(as_of, n)
    assert relative(f"{sign}{abs(n) // 12}y", as_of) == add_months(as_of, 12 * (abs(n) // 12) * (1 if n >= 0 else -1))
    if 1 <= abs(n) <= 1200:
        end = add_months(date.fromordinal(as_of.toordinal() + 1), -abs(n))
        assert window_start(Window(n=abs(n), unit="M"), as_of) == datetime(end.year, end.month, end.day)
