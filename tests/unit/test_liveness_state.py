"""The pure liveness state machine: transitions, one message each, delivery bookkeeping, texts."""

from __future__ import annotations

import pytest

from marketpipe.liveness import state as m
from marketpipe.liveness.state import LivenessState, Observation

S = 1_000_000
T0 = 1_795_839_026_000_000  # 2026-11-28 04:10:26Z


def healthy(at: int) -> Observation:
    return Observation(at, True, last_data_us=at - S, last_data="bitfinex_book (db)")


def failing(at: int, since: int | None = T0, what: str = "bitfinex stream stopped") -> Observation:
    return Observation(at, False, what, stopped_since_us=since, last_data_us=since, last_data="raw bitfinex")


def step(state: LivenessState, obs: Observation) -> LivenessState:
    return m.observe(state, obs, "host", 60)


def test_first_healthy_check_sends_nothing_and_outage_sends_once() -> None:
    state = step(LivenessState(), healthy(T0))
    assert state.status == "healthy" and state.outbox is None and not state.needs_send
    state = step(state, failing(T0 + 90 * S))
    assert state.status == "failing" and state.since_us == T0 and state.transitions == 1
    assert state.outbox is not None and state.outbox.kind == "failure" and state.needs_send
    assert state.outbox.text == (
        "marketpipe DOWN (host): bitfinex stream stopped. Since 2026-11-28 04:10:26Z, 1m30s ago "
        "(threshold 1m00s). Last data seen: 2026-11-28 04:10:26Z (raw bitfinex)."
    )
    first = state.outbox
    for k in range(2, 6):  # the outage goes on: same transition, same message
        state = step(state, failing(T0 + k * 60 * S, what="bitfinex connected but saving nothing"))
    assert state.outbox == first and state.transitions == 1
    assert state.what == "bitfinex connected but saving nothing"
    assert state.cause == "bitfinex stream stopped"  # what the DOWN text said
    state = step(state, healthy(T0 + 400 * S))
    assert state.outbox is not None and "; it was: bitfinex stream stopped." in state.outbox.text
    assert state.cause == "" and state.what == ""


def test_a_state_file_written_before_causes_were_kept_still_recovers() -> None:
    data = m.to_json(step(LivenessState(status="healthy"), failing(T0 + 90 * S)))
    del data["cause"]
    state = step(m.from_json(data), healthy(T0 + 200 * S))
    assert state.outbox is not None and "; it was: bitfinex stream stopped." in state.outbox.text


def test_recovery_opens_the_second_transition_with_the_outage_length() -> None:
    state = step(step(LivenessState(status="healthy"), failing(T0 + 70 * S)), healthy(T0 + 3725 * S))
    assert state.status == "healthy" and state.transitions == 2
    assert state.outbox is not None and state.outbox.kind == "recovery"
    assert state.outbox.text == (
        "marketpipe RECOVERED (host): data streaming and saved again at 2026-11-28 05:12:31Z. "
        "Outage lasted 1h02m (since 2026-11-28 04:10:26Z); it was: bitfinex stream stopped. "
        "The outage alert could not be sent."
    )
    assert [h.delivery for h in state.history] == ["superseded"]


def test_first_check_failing_alerts_and_uses_now_when_data_never_arrived() -> None:
    state = step(LivenessState(), failing(T0, since=None, what="no data to watch"))
    assert state.since_us == T0 and state.outbox is not None
    assert "Since 2026-11-28 04:10:26Z, 0s ago" in state.outbox.text


def test_delivery_states_make_sending_at_most_once() -> None:
    state = step(LivenessState(status="healthy"), failing(T0 + 61 * S))
    sending = m.begin_send(state)
    assert (
        sending.outbox is not None and sending.outbox.delivery == "sending" and sending.outbox.attempts == 1
    )
    assert not sending.needs_send
    with pytest.raises(ValueError):
        m.begin_send(sending)
    # A certain failure goes back to pending (retried next check)...
    retry = m.record_failed(sending, "HTTP 500", maybe_delivered=False)
    assert retry.needs_send and retry.outbox is not None and retry.outbox.last_error == "HTTP 500"
    # ...an unknown outcome is final.
    unknown = m.record_failed(m.begin_send(retry), "read timeout", maybe_delivered=True)
    assert unknown.outbox is not None and unknown.outbox.delivery == "unknown" and not unknown.needs_send
    assert unknown.outbox.attempts == 2
    sent = m.record_sent(m.begin_send(retry), ("uuid-1",), T0 + 62 * S)
    assert (
        sent.outbox is not None and sent.outbox.delivery == "sent" and sent.outbox.message_ids == ("uuid-1",)
    )
    with pytest.raises(ValueError):
        m.record_sent(sent, (), 0)


def test_a_crash_while_sending_is_never_resent() -> None:
    state = m.begin_send(step(LivenessState(status="healthy"), failing(T0 + 61 * S)))
    recovered = m.recover_interrupted(state)
    assert recovered.outbox is not None and recovered.outbox.delivery == "unknown"
    assert not recovered.needs_send and "not resent" in recovered.outbox.last_error
    assert m.recover_interrupted(recovered) is recovered


def test_a_delivered_failure_gives_a_plain_recovery_text() -> None:
    state = step(LivenessState(status="healthy"), failing(T0 + 61 * S))
    state = m.record_sent(m.begin_send(state), ("u",), T0 + 62 * S)
    state = step(state, healthy(T0 + 100 * S))
    assert state.outbox is not None and not state.outbox.text.endswith("could not be sent.")
    assert state.history[-1].delivery == "sent"


def test_history_is_bounded() -> None:
    state = LivenessState(status="healthy")
    for k in range(30):
        state = step(
            state,
            failing(T0 + k * 100 * S, since=T0 + k * 100 * S) if k % 2 == 0 else healthy(T0 + k * 100 * S),
        )
    assert state.transitions == 30 and len(state.history) == m.HISTORY


def test_json_round_trip_and_validation() -> None:
    state = m.record_sent(
        m.begin_send(step(LivenessState(status="healthy"), failing(T0 + 61 * S))), ("a",), T0
    )
    state = step(state, healthy(T0 + 120 * S))
    data = m.to_json(state)
    assert data["version"] == 1 and data["since"] == "2026-11-28 04:12:26Z"
    assert m.from_json(data) == state
    with pytest.raises(ValueError):
        m.from_json({**data, "version": 99})
    with pytest.raises(ValueError):
        m.from_json({**data, "status": "sleepy"})


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (42.4, "42s"),
        (95, "1m35s"),
        (3600, "1h00m"),
        (7380, "2h03m"),
        (273_600, "3d04h"),
        (-5, "0s"),
    ],
)
def test_durations_are_short(seconds: float, text: str) -> None:
    assert m.duration(seconds) == text


def test_texts_are_plain_ascii() -> None:
    state = step(step(LivenessState(status="healthy"), failing(T0 + 61 * S)), healthy(T0 + 200 * S))
    for outbox in (*state.history, state.outbox):
        assert outbox is not None and outbox.text.isascii()
    assert m.clock(None) == "never"
