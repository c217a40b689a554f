"""The liveness state machine: pure functions from (state, observation) to state, no I/O.

Two statuses matter, ``healthy`` and ``failing`` (``unknown`` before the first check). Each change of
status is a *transition* with a number and exactly one outgoing message in the *outbox*. The outbox
records how far delivery got, so the checker's I/O shell can promise one text per transition across
crashes and restarts (the state is persisted after every step):

``pending``   decided, not handed to the provider yet (or a previous attempt certainly failed);
``sending``   persisted *before* the provider is called: if the process dies during the call, the
              next start finds ``sending`` and turns it into ``unknown`` instead of sending again;
``sent``      the provider accepted it (message ids recorded);
``unknown``   the provider may or may not have accepted it; never resent (at most once);
``superseded`` a newer transition happened before this message could go out.

Only ``pending`` messages are (re)sent, so a message is sent at most once per transition; it is sent
at least once unless the process dies mid-request or the provider's answer is lost, the two cases in
which nobody can know whether it went out (see docs/LIVENESS.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from marketpipe.timeutil import us_to_datetime

Status = Literal["unknown", "healthy", "failing"]
Delivery = Literal["pending", "sending", "sent", "unknown", "superseded"]
STATE_VERSION = 1


@dataclass(frozen=True)
class Observation:
    """One check's verdict (see ``marketpipe.liveness.sources.assess``)."""

    at_us: int
    healthy: bool
    what: str = ""
    """What stopped, for humans ("bitfinex stream stopped: no frames, no rows"); empty when healthy."""
    stopped_since_us: int | None = None
    """When the stalled data stopped (its newest timestamp); None when it never arrived."""
    last_data_us: int | None = None
    last_data: str = ""
    """The newest data seen anywhere and where ("bitfinex_book (db)")."""


@dataclass(frozen=True)
class Outbox:
    """The one message of a transition and how far its delivery got."""

    transition: int
    kind: Literal["failure", "recovery"]
    text: str
    created_us: int
    delivery: Delivery = "pending"
    attempts: int = 0
    last_error: str = ""
    message_ids: tuple[str, ...] = ()
    sent_us: int | None = None


@dataclass(frozen=True)
class LivenessState:
    status: Status = "unknown"
    since_us: int | None = None
    """Failing: when the data stopped; healthy: when it was found flowing (again)."""
    what: str = ""
    """Failing: what is stopped now (it may change as the outage goes on)."""
    cause: str = ""
    """Failing: what the DOWN text said stopped, the diagnosis at the start of the outage; the recovery
    text repeats it, so the two texts of an outage name the same cause (not, say, the few seconds in
    which a resumed stream's rows were still on their way to the stores)."""
    checked_us: int | None = None
    last_data_us: int | None = None
    last_data: str = ""
    transitions: int = 0
    outbox: Outbox | None = None
    history: tuple[Outbox, ...] = field(default=())
    """The last few finished messages (newest last), for operators reading the state file."""

    @property
    def needs_send(self) -> bool:
        return self.outbox is not None and self.outbox.delivery == "pending"


HISTORY = 10


def observe(state: LivenessState, obs: Observation, label: str, threshold_s: float) -> LivenessState:
    """Fold one observation in; a change of status opens a transition with its message."""
    state = dataclasses.replace(state, checked_us=obs.at_us)
    if obs.last_data_us is not None:
        state = dataclasses.replace(state, last_data_us=obs.last_data_us, last_data=obs.last_data)
    if obs.healthy:
        if state.status == "healthy":
            return state
        if state.status == "unknown":
            return dataclasses.replace(state, status="healthy", since_us=obs.at_us, what="")
        undelivered = (
            state.outbox is not None
            and state.outbox.kind == "failure"
            and (state.outbox.delivery in ("pending", "superseded"))
        )
        text = recovery_text(label, state.since_us, obs.at_us, state.cause or state.what, undelivered)
        state = dataclasses.replace(state, cause="")
        return _transition(state, "healthy", obs.at_us, "", "recovery", text, obs.at_us)
    since = obs.stopped_since_us if obs.stopped_since_us is not None else obs.at_us
    if state.status == "failing":
        # Same outage: keep its start, its cause and its (single) message; only ``what`` may change.
        return dataclasses.replace(state, what=obs.what)
    text = failure_text(label, obs, since, threshold_s)
    state = dataclasses.replace(state, cause=obs.what)
    return _transition(state, "failing", since, obs.what, "failure", text, obs.at_us)


def _transition(
    state: LivenessState,
    status: Status,
    since_us: int,
    what: str,
    kind: Literal["failure", "recovery"],
    text: str,
    now_us: int,
) -> LivenessState:
    history = state.history
    if state.outbox is not None:
        old = state.outbox
        if old.delivery in ("pending", "sending"):
            old = dataclasses.replace(old, delivery="superseded")
        history = (*history, old)[-HISTORY:]
    number = state.transitions + 1
    return dataclasses.replace(
        state,
        status=status,
        since_us=since_us,
        what=what,
        transitions=number,
        outbox=Outbox(transition=number, kind=kind, text=text, created_us=now_us),
        history=history,
    )


def begin_send(state: LivenessState) -> LivenessState:
    """Mark the pending message as being handed over (persist this before calling the provider)."""
    if state.outbox is None or state.outbox.delivery != "pending":
        raise ValueError("no pending message to send")
    outbox = dataclasses.replace(state.outbox, delivery="sending", attempts=state.outbox.attempts + 1)
    return dataclasses.replace(state, outbox=outbox)


def record_sent(state: LivenessState, message_ids: tuple[str, ...], now_us: int) -> LivenessState:
    outbox = _sending(state)
    return dataclasses.replace(
        state,
        outbox=dataclasses.replace(
            outbox, delivery="sent", message_ids=message_ids, sent_us=now_us, last_error=""
        ),
    )


def record_failed(state: LivenessState, error: str, maybe_delivered: bool) -> LivenessState:
    """A certain failure goes back to ``pending`` (retried next check); an unknown outcome is final."""
    outbox = _sending(state)
    delivery: Delivery = "unknown" if maybe_delivered else "pending"
    return dataclasses.replace(state, outbox=dataclasses.replace(outbox, delivery=delivery, last_error=error))


def recover_interrupted(state: LivenessState) -> LivenessState:
    """On start: a message left ``sending`` means the last checker died mid-request: outcome unknown."""
    if state.outbox is None or state.outbox.delivery != "sending":
        return state
    outbox = dataclasses.replace(
        state.outbox, delivery="unknown", last_error="checker stopped while sending; not resent"
    )
    return dataclasses.replace(state, outbox=outbox)


def _sending(state: LivenessState) -> Outbox:
    if state.outbox is None or state.outbox.delivery != "sending":
        raise ValueError("no message is being sent")
    return state.outbox


# -- message texts (plain ASCII: one SMS segment holds 160 GSM characters but only 70 in UCS-2) ------


def clock(us: int | None, with_date: bool = True) -> str:
    if us is None:
        return "never"
    dt = us_to_datetime(us)
    return dt.strftime("%Y-%m-%d %H:%M:%SZ" if with_date else "%H:%M:%SZ")


def duration(seconds: float) -> str:
    """``42s``, ``1m35s``, ``2h03m``, ``3d04h``: short and unambiguous in a text message."""
    total = max(0, round(seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def failure_text(label: str, obs: Observation, since_us: int, threshold_s: float) -> str:
    last = f"{clock(obs.last_data_us)} ({obs.last_data})" if obs.last_data_us is not None else "none"
    return (
        f"marketpipe DOWN ({label}): {obs.what}. Since {clock(since_us)}, "
        f"{duration((obs.at_us - since_us) / 1e6)} ago (threshold {duration(threshold_s)}). "
        f"Last data seen: {last}."
    )


def recovery_text(label: str, since_us: int | None, at_us: int, what: str, undelivered: bool) -> str:
    lasted = duration((at_us - since_us) / 1e6) if since_us is not None else "unknown"
    text = (
        f"marketpipe RECOVERED ({label}): data streaming and saved again at {clock(at_us)}. "
        f"Outage lasted {lasted} (since {clock(since_us)})"
    )
    if what:
        text += f"; it was: {what}"
    if undelivered:
        text += ". The outage alert could not be sent"
    return text + "."


# -- persistence format -------------------------------------------------------------------------------


def to_json(state: LivenessState) -> dict[str, Any]:
    data = dataclasses.asdict(state)
    data["version"] = STATE_VERSION
    data["since"] = clock(state.since_us) if state.since_us is not None else None
    data["checked"] = clock(state.checked_us) if state.checked_us is not None else None
    return data


def from_json(data: dict[str, Any]) -> LivenessState:
    if data.get("version") != STATE_VERSION:
        raise ValueError(f"unsupported state version {data.get('version')!r}")
    if data.get("status") not in ("unknown", "healthy", "failing"):
        raise ValueError(f"bad status {data.get('status')!r}")

    def outbox(item: dict[str, Any] | None) -> Outbox | None:
        if item is None:
            return None
        names = {f.name for f in dataclasses.fields(Outbox)}
        values = {k: v for k, v in item.items() if k in names}
        values["message_ids"] = tuple(values.get("message_ids", ()))
        return Outbox(**values)

    names = {f.name for f in dataclasses.fields(LivenessState)}
    values = {k: v for k, v in data.items() if k in names}
    values["outbox"] = outbox(values.get("outbox"))
    values["history"] = tuple(o for o in (outbox(h) for h in values.get("history", ())) if o is not None)
    return LivenessState(**values)
