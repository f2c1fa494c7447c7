"""A version-1 ledger written by an earlier controller still loads, and is written back unchanged.

``data/ledger_v1`` was written by the controller of main at 5a1e7b2 (before memory transitions were
methods of the memory): a snapshot with something in every field, and a journal after it with
intents, an id that came back, two withdrawn creates, a destroy and a line torn by a crash.
``resaved.memory.json`` is the snapshot main's controller writes after loading them (at 1e7e251,
which has ``autoscale`` and ``lingering``: an older file loads with none).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from controller.ledger import Ledger
from controller.plan import ExpectedCreate

DATA = Path(__file__).parent / "data" / "ledger_v1"
T = 1_780_000_000.0


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    for name in ("controller.memory.json", "controller.memory.journal"):
        shutil.copy(DATA / name, tmp_path / name)
    return Ledger(tmp_path / "controller.memory.json", tmp_path / "controller.memory.journal")


def test_a_version_1_ledger_loads_as_it_did(ledger):
    """The journal's events apply to the snapshot: ids confirmed, refused creates freed, intents kept."""
    memory = ledger.load()
    assert memory.creates[("web", 4)] == ExpectedCreate("web-4-n5m4b", T + 1, "sess-web-4")
    assert memory.creates[("web", 6)] == ExpectedCreate("web-6-p0o9i", T + 3)  # uncertain: looked for by name
    assert memory.creates[("batch", 1)].session_id == "sess-batch-1"
    assert ("web", 5) not in memory.creates and ("batch", 3) not in memory.creates
    assert ("web", 7) not in memory.creates  # the torn line's create was never sent
    assert memory.destroys["sess-gone-3"] == T + 2
    assert memory.backoffs["broken"].failures == 4
    assert memory.conditions["web"]["Available"].status == "True"


def test_a_version_1_ledger_is_written_back_byte_for_byte(ledger):
    """Loading and saving gives exactly the snapshot the earlier controller wrote: nothing lost or renamed."""
    ledger.save(ledger.load())
    assert ledger.snapshot.read_bytes() == (DATA / "resaved.memory.json").read_bytes()
    assert not ledger.journal.exists()
