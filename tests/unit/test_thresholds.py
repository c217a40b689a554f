"""Threshold crossings: one event per crossing, never one per second (property-tested)."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketpipe.bitso.thresholds import ThresholdTracker, parse_thresholds
from marketpipe.errors import ConfigError

THRESHOLDS = (Decimal("1.0"), Decimal("0.5"), Decimal("0.1"))
spreads = st.one_of(st.none(), st.decimals(min_value=0, max_value=3, places=3))


def test_parse_thresholds_sorted_deduplicated_and_validated() -> None:
    assert parse_thresholds("0.1, 1.0,0.5,0.5%") == THRESHOLDS
    assert parse_thresholds(["2"]) == (Decimal("2"),)
    for bad in ("", "abc", "0", "-1", "nan"):
        with pytest.raises(ConfigError):
            parse_thresholds(bad)


def test_a_spike_raises_one_alert_per_threshold_and_one_notice_back() -> None:
    tracker = ThresholdTracker(THRESHOLDS)
    seen = [
        tracker.observe("btc_mxn", Decimal(s), i) for i, s in enumerate(["0.05", "0.7", "0.8", "0.7", "0.05"])
    ]
    assert [(e.threshold, e.direction) for e in seen[1]] == [
        (Decimal("0.5"), "above"),
        (Decimal("0.1"), "above"),
    ]
    assert seen[2] == [] and seen[3] == []
    assert [(e.threshold, e.direction) for e in seen[4]] == [
        (Decimal("0.5"), "below"),
        (Decimal("0.1"), "below"),
    ]
    assert tracker.observe("btc_mxn", None, 9) == []
    assert tracker.observe("btc_mxn", Decimal("0.1"), 10) == [], "equal to the threshold is not above"


def test_state_survives_export_and_restore() -> None:
    tracker = ThresholdTracker(THRESHOLDS)
    tracker.observe("usd_mxn", Decimal("0.6"), 1)
    resumed = ThresholdTracker(THRESHOLDS, tracker.export())
    assert resumed.above("usd_mxn") == (Decimal("0.5"), Decimal("0.1"))
    assert resumed.observe("usd_mxn", Decimal("0.6"), 2) == []
    assert [e.direction for e in resumed.observe("usd_mxn", Decimal("0.2"), 3)] == ["below"]


@given(st.lists(spreads, max_size=60))
def test_events_are_exactly_the_crossings(values: list[Decimal | None]) -> None:
    tracker = ThresholdTracker(THRESHOLDS)
    events = [e for i, v in enumerate(values) for e in tracker.observe("b", v, i)]
    known = [v for v in values if v is not None]
    for t in THRESHOLDS:
        mine = [e for e in events if e.threshold == t]
        states = [False] + [v > t for v in known]
        crossings = sum(1 for a, b in itertools.pairwise(states) if a != b)
        assert len(mine) == crossings
        assert [e.direction for e in mine] == ["above", "below"] * (len(mine) // 2) + ["above"] * (
            len(mine) % 2
        )
        assert all((e.spread > t) == (e.direction == "above") for e in mine)
