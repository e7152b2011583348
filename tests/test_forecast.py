"""The burn-rate estimator (docs/design.md §1, "The forecast (decided design)"): ordinary least
squares over (time, utilization), checked against an independent exact computation,
and the projection rule now + (100 - current) / slope with its refusals.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from claude_matrix_bot.core.forecast import Sample, least_squares_slope, project

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
T_NOW = int(NOW.timestamp())


def exact_slope(samples: list[Sample]) -> Fraction | None:
    """The textbook closed form, in exact rational arithmetic on the raw Unix seconds."""
    n = len(samples)
    xs = [Fraction(t) for t, _ in samples]
    ys = [Fraction(u) for _, u in samples]
    zero = Fraction(0)
    sum_x, sum_y = sum(xs, zero), sum(ys, zero)
    denominator = n * sum((x * x for x in xs), zero) - sum_x * sum_x
    if n < 2 or denominator == 0:
        return None
    numerator = n * sum((x * y for x, y in zip(xs, ys, strict=True)), zero) - sum_x * sum_y
    return Fraction(numerator, denominator)


# Realistic: Unix seconds of today, a few hours of samples, percents with decimals.
samples_strategy = st.lists(
    st.tuples(
        st.integers(min_value=T_NOW - 6 * 3600, max_value=T_NOW),
        st.floats(min_value=0.0, max_value=100.0, allow_nan=False),
    ),
    min_size=0,
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(samples_strategy)
def test_slope_matches_the_exact_closed_form(samples: list[Sample]) -> None:
    expected = exact_slope(samples)
    got = least_squares_slope(samples)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        # Percent per second: 1e-9 %/s is 0.0036 %/h, far below anything that matters.
        assert got == pytest.approx(float(expected), rel=1e-6, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(samples_strategy)
def test_slope_matches_the_stdlib_regression(samples: list[Sample]) -> None:
    assume(len({t for t, _ in samples}) >= 2)
    # statistics.linear_regression on offsets (it works in floats: raw Unix seconds
    # squared would lose the digits that matter).
    t0 = samples[0][0]
    reference = statistics.linear_regression([t - t0 for t, _ in samples], [u for _, u in samples]).slope
    got = least_squares_slope(samples)
    assert got == pytest.approx(reference, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        pytest.param([], None, id="empty"),
        pytest.param([(T_NOW, 10.0)], None, id="one-sample"),
        pytest.param([(T_NOW, 10.0), (T_NOW, 30.0)], None, id="time-does-not-vary"),
        pytest.param([(T_NOW, 10.0), (T_NOW + 3600, 22.0)], 12.0 / 3600, id="two-points"),
        pytest.param([(T_NOW + 300 * k, 5.0 + 0.5 * k) for k in range(72)], 0.5 / 300, id="six-hours-linear"),
        pytest.param([(T_NOW + 300 * k, 40.0) for k in range(10)], 0.0, id="flat"),
        pytest.param([(T_NOW + 300 * k, 40.0 - k) for k in range(10)], -1.0 / 300, id="falling"),
        # A slow, exact burn on raw Unix seconds keeps its precision.
        pytest.param([(T_NOW + 300 * k, 0.001 * k) for k in range(50)], 0.001 / 300, id="tiny-slope"),
        # Out of order and duplicate times are still one least-squares fit.
        pytest.param(
            [(T_NOW + 600, 12.0), (T_NOW, 10.0), (T_NOW + 300, 11.0), (T_NOW + 300, 11.0)], 2.0 / 600, id="unordered"
        ),
    ],
)
def test_slope_examples(samples: list[Sample], expected: float | None) -> None:
    got = least_squares_slope(samples)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_slope_is_not_thrown_by_noise() -> None:
    # Noisy but steady: +6 %/h with ±1 % noise alternating.
    samples = [(T_NOW + 300 * k, 20.0 + 0.5 * k + (1.0 if k % 2 else -1.0)) for k in range(72)]
    slope = least_squares_slope(samples)
    assert slope is not None
    assert slope * 3600 == pytest.approx(6.0, abs=0.1)


# --- project: now + (100 - current) / slope, or None -------------------------------------


def history_at(per_hour: float, count: int, every: int = 300, start: float = 10.0) -> list[Sample]:
    """`count` samples ending at NOW, rising `per_hour` percent per hour."""
    first = T_NOW - every * (count - 1)
    return [(first + every * k, start + per_hour * every * k / 3600) for k in range(count)]


@settings(max_examples=200, deadline=None)
@given(
    samples_strategy.filter(lambda s: len(s) >= 2),
    st.floats(min_value=0.0, max_value=100.0),
    st.integers(min_value=2, max_value=20),
    st.integers(min_value=1, max_value=7200),
)
def test_project_follows_the_design_rules(
    samples: list[Sample], current: float, min_samples: int, min_span_sec: int
) -> None:
    # The estimator is checked against the exact fit above; here, the rules built on it.
    samples = sorted(samples)
    result = project(samples, now=NOW, current=current, min_samples=min_samples, min_span_sec=min_span_sec)
    span = samples[-1][0] - samples[0][0]
    slope = least_squares_slope(samples)
    if len(samples) < min_samples or span < min_span_sec or slope is None or slope <= 0:
        assert result is None
        return
    assert result is not None
    assert result.samples == len(samples)
    assert result.span_sec == span
    assert result.slope_per_hour == pytest.approx(slope * 3600)
    # now + (100 - current) / slope, capped at ten years so a near-flat fit cannot overflow.
    seconds = min((100.0 - current) / slope, 10 * 365 * 86400)
    expected = NOW + timedelta(seconds=seconds)
    assert abs((result.exhausted_at - expected).total_seconds()) <= 0.001
    assert result.exhausted_at >= NOW


def test_project_example() -> None:
    # 12 %/h over an hour, now at 40 %: 60 % to go is 5 h.
    result = project(history_at(12.0, 13, start=28.0), now=NOW, current=40.0, min_samples=6, min_span_sec=3600)
    assert result is not None
    assert result.slope_per_hour == pytest.approx(12.0)
    assert result.samples == 13
    assert result.span_sec == 3600
    assert abs((result.exhausted_at - (NOW + timedelta(hours=5))).total_seconds()) < 0.01


def test_project_starts_from_the_current_reading_not_the_fitted_line() -> None:
    history = history_at(12.0, 13, start=28.0)  # the line ends at 40 %
    result = project(history, now=NOW, current=70.0, min_samples=6, min_span_sec=3600)
    assert result is not None
    assert abs((result.exhausted_at - (NOW + timedelta(hours=2.5))).total_seconds()) < 0.01


@pytest.mark.parametrize(
    ("history", "min_samples", "min_span_sec"),
    [
        pytest.param(history_at(12.0, 5), 6, 600, id="too-few-samples"),
        pytest.param(history_at(12.0, 12), 6, 3600, id="span-55-minutes"),
        pytest.param(history_at(0.0, 20), 6, 3600, id="flat"),
        pytest.param(history_at(-2.0, 20), 6, 3600, id="falling"),
        pytest.param([(T_NOW, 10.0)] * 10, 6, 0, id="one-instant"),
    ],
)
def test_project_refuses(history: list[Sample], min_samples: int, min_span_sec: int) -> None:
    assert project(history, now=NOW, current=50.0, min_samples=min_samples, min_span_sec=min_span_sec) is None


def test_project_at_the_limits() -> None:
    history = history_at(12.0, 13)
    exactly = project(history, now=NOW, current=50.0, min_samples=13, min_span_sec=3600)
    assert exactly is not None  # min_samples and min_span are inclusive
    full = project(history, now=NOW, current=100.0, min_samples=6, min_span_sec=3600)
    assert full is not None and full.exhausted_at == NOW
    over = project(history, now=NOW, current=104.0, min_samples=6, min_span_sec=3600)
    assert over is not None and over.exhausted_at == NOW


def test_project_with_a_barely_positive_slope_does_not_overflow() -> None:
    history = [(T_NOW - 300 * k, 10.0 - 1e-12 * k) for k in range(20)][::-1]
    result = project(history, now=NOW, current=10.0, min_samples=6, min_span_sec=3600)
    assert result is not None
    assert result.exhausted_at > NOW + timedelta(days=365)
