"""Process time never jumps; a step of the wall clock is seen once; persisted times are re-based on load."""

from __future__ import annotations

import dataclasses
import json

import pytest

from controller.clock import STEP_TOLERANCE, ProcessClock, StepWatch
from controller.creates import CREATE_BACKOFF
from controller.ledger import Ledger
from controller.memorydoc import MemoryDocument, from_document
from controller.plan import Memory
from controller.rebase import FIELDS, PAUSE_CAP, rebase

T = 1_780_000_000.0
HOURS_2 = 7200.0


class Sources:
    """A steady source and a wall clock that a test moves: the wall may step, the steady one only runs."""

    def __init__(self) -> None:
        self.steady_now = 100.0
        self.wall_now = T

    def run(self, seconds: float) -> None:
        self.steady_now += seconds
        self.wall_now += seconds

    def step(self, seconds: float) -> None:
        self.wall_now += seconds

    def steady(self) -> float:
        return self.steady_now

    def wall(self) -> float:
        return self.wall_now


@pytest.fixture
def sources() -> Sources:
    return Sources()


def test_process_time_starts_at_the_wall_clock_and_ignores_its_steps(sources):
    clock = ProcessClock(wall=sources.wall, steady=sources.steady)
    assert clock() == T and clock.offset() == 0.0
    sources.run(30)
    assert clock() == T + 30
    sources.step(HOURS_2)
    assert clock() == T + 30 and clock.offset() == HOURS_2  # the step is seen, not followed
    sources.run(5)
    sources.step(-2 * HOURS_2)
    assert clock() == T + 35 and clock.offset() == -HOURS_2


def test_a_new_process_anchors_on_the_wall_clock_as_it_is_then(sources):
    sources.step(-HOURS_2)
    assert ProcessClock(wall=sources.wall, steady=sources.steady)() == T - HOURS_2


def test_each_step_is_reported_once_with_its_size(sources):
    watch = StepWatch(ProcessClock(wall=sources.wall, steady=sources.steady))
    assert watch.look() is None
    sources.run(10)
    sources.step(HOURS_2)
    assert watch.look() == HOURS_2
    sources.run(0.5)
    assert watch.look() is None  # once
    sources.step(-HOURS_2)
    assert watch.look() == -HOURS_2


def test_drift_within_the_tolerance_never_adds_up_to_a_step(sources):
    """An NTP slew moves the wall clock a little at every look: never reported, however long it goes on."""
    watch = StepWatch(ProcessClock(wall=sources.wall, steady=sources.steady))
    for _ in range(100):
        sources.run(0.5)
        sources.step(STEP_TOLERANCE / 2)
        assert watch.look() is None


FUTURE = T + HOURS_2
PAST = T - 60.0


def document() -> dict:
    """A persisted memory with a time in the future (the wall clock stepped back 2 h since) in every time field."""
    return {
        "version": 1, "journal_seq": 0,
        "creates": [{"set": "web", "slot": 1, "name": "web-1", "at": FUTURE, "session_id": None},
                    {"set": "web", "slot": 2, "name": "web-2", "at": PAST, "session_id": "s2"},
                    {"set": "web", "slot": 3, "name": "web-3", "at": PAST, "session_id": None}],
        "destroys": {"gone": FUTURE, "old": PAST},
        "restarts": [{"set": "web", "slot": 3, "count": 2, "last_end": FUTURE, "last_session": "s3",
                      "early_ends": [PAST, FUTURE]}],
        "suspect_since": FUTURE,
        "backoffs": [{"set": "broken", "failures": 3, "until": FUTURE + 20, "message": "no", "spec_key": "k"},
                     {"set": "short", "failures": 1, "until": T + 5, "message": "no", "spec_key": "k"}],
        "creates_paused_until": FUTURE,
        "conditions": [{"set": "web", "type": "Available", "status": "True", "since": FUTURE}],
        "progress": [{"set": "web", "fingerprint": "1/2", "since": FUTURE}],
        "pending_since": {"p": FUTURE},
        "renew_failures": {"r": FUTURE},
        "autoscale": [{"set": "auto", "count": 2, "history": [[PAST, 1], [FUTURE, 2]]}],
        "lingering": {"retries": {"l": {"attempts": 2, "retry_at": FUTURE}, "m": {"attempts": 1, "retry_at": T + 3}},
                      "since": {"l": FUTURE}},
        "renews": [{"id": "n", "at": FUTURE, "before": FUTURE + 60, "lifetime": 3600.0}],
        "lookups": [{"id": "v", "answer": "live", "at": FUTURE}],
        "owned_missed": {"o": FUTURE}, "written_off": {"cc-web-abcdef-9": FUTURE},
    }


def test_persisted_times_in_the_future_are_clamped_per_field():
    """Events in the future become now (their windows start again in full); deadlines end within their cap."""
    memory = from_document(MemoryDocument.model_validate(document()))
    moved = rebase(memory, T)
    assert memory.creates[("web", 1)].at == T and memory.creates[("web", 2)].at == PAST
    assert memory.creates[("web", 3)].at == PAST
    assert memory.destroys == {"gone": T, "old": PAST}
    history = memory.restarts[("web", 3)]
    assert (history.last_end, history.early_ends) == (T, (PAST, T))
    assert memory.suspect_since == T
    assert memory.backoffs["broken"].until == T + 20 * 1.1  # never longer than its 3rd wait (20 s, jitter 10 %)
    assert memory.backoffs["short"].until == T + 5  # within its wait: as it was
    assert memory.creates_paused_until == T + PAUSE_CAP
    assert memory.conditions["web"]["Available"].since == T
    assert memory.progress["web"] == ("1/2", T)
    assert memory.pending_since == {"p": T} and memory.renew_failures == {"r": T}
    assert memory.autoscale["auto"].history == ((PAST, 1), (T, 2))
    assert memory.lingering.retries["l"].retry_at == pytest.approx(T + 10 * 1.1)  # the 2nd wait of 10 s, at most
    assert memory.lingering.retries["m"].retry_at == T + 3
    assert memory.lingering.since == {"l": T}
    assert (memory.renews["n"].at, memory.renews["n"].before) == (T, FUTURE + 60)  # the service's expiry as it is
    assert memory.lookups["v"].at == T
    assert memory.owned_missed == {"o": T} and memory.written_off == {"cc-web-abcdef-9": T}
    assert moved == 18


def test_times_in_the_past_are_left_as_they_are():
    """A memory written on a clock that did not step loads unchanged (nothing to re-base)."""
    memory = from_document(MemoryDocument.model_validate(document()))
    before = dataclasses.replace(memory)
    assert rebase(memory, FUTURE + CREATE_BACKOFF.cap) == 0
    assert memory == before


def test_every_field_of_the_memory_is_classified_for_re_basing():
    """A new memory field must say whether it holds times (and how they are clamped) in ``controller.rebase``."""
    assert sorted(FIELDS) == sorted(f.name for f in dataclasses.fields(Memory))


def test_times_of_a_process_whose_wall_clock_stepped_are_moved_onto_the_wall_clock_first():
    """The old process saw the wall clock step 2 h ahead: its times are 2 h behind the wall clock; the new
    process (anchored on the wall clock) moves them by the persisted offset, so no window is cut short."""
    old = T - HOURS_2  # the old process's time, as it saved; the wall clock said T
    memory = from_document(MemoryDocument.model_validate({
        "version": 1, "journal_seq": 0, "clock_offset": HOURS_2,
        "creates": [{"set": "web", "slot": 1, "name": "web-1", "at": old - 30, "session_id": "s1"}],
        "backoffs": [{"set": "broken", "failures": 1, "until": old + 4, "message": "no", "spec_key": "k"}],
    }))
    assert rebase(memory, T, shift=HOURS_2) == 0
    assert memory.creates[("web", 1)].at == T - 30  # answered 30 s ago, not 2 h ago
    assert memory.backoffs["broken"].until == T + 4


def test_the_ledger_keeps_the_clock_offset_only_when_the_wall_clock_stepped(tmp_path):
    """A snapshot says how far the wall clock was ahead of its times; without a step it is as before."""
    ledger = Ledger(tmp_path / "m.json", tmp_path / "m.journal")
    ledger.save(Memory())
    assert "clock_offset" not in json.loads(ledger.snapshot.read_text())
    ledger.save(Memory(), clock_offset=HOURS_2)  # the same memory: written again for the offset
    assert json.loads(ledger.snapshot.read_text())["clock_offset"] == HOURS_2
    again = Ledger(tmp_path / "m.json", tmp_path / "m.journal")
    again.load()
    assert again.clock_offset == HOURS_2
