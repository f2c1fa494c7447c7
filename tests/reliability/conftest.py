"""Fixtures of the in-process tier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.rig import Rig


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    """The controller and the simulated service in this process, on a manual clock."""
    rig = Rig(tmp_path)
    yield rig
    rig.close()


@pytest.fixture
def eager_rig(tmp_path: Path) -> Iterator[Rig]:
    """A rig whose destructive manifest changes act at once (``--destructive-settle 0``): for tests of
    something else that scale down or remove sets."""
    rig = Rig(tmp_path, options={"destructive_settle": 0})
    yield rig
    rig.close()
