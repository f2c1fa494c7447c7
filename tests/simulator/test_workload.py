"""How a headless command line is read: what completes, fails, or runs forever."""

from __future__ import annotations

import pytest

from controller.simulator.workload import FOREVER, Outcome, outcome_of


@pytest.mark.parametrize(
    ("cmd", "args", "expected"),
    [
        ("sleep", "30", Outcome(runtime=30.0)),
        ("/bin/sleep", "2.5", Outcome(runtime=2.5)),
        ("sleep", "2m", Outcome(runtime=120.0)),
        ("sleep", "1h", Outcome(runtime=3600.0)),
        ("sleep 5", None, Outcome(runtime=0.0, exit_code=128,
                                  error='exec: "sleep 5": executable file not found in $PATH')),
        ("true", None, Outcome(runtime=0.0)),
        ("/usr/bin/true", None, Outcome(runtime=0.0)),
        ("false", None, Outcome(runtime=0.0, exit_code=1)),
        ("sh", "-c 'sleep 3'", Outcome(runtime=3.0)),
        ("bash", '-c "false"', Outcome(runtime=0.0, exit_code=1)),
        ("bash", "-c true", Outcome(runtime=0.0)),
        (None, None, FOREVER),
        ("python", "run.py", FOREVER),
        ("sleep", None, FOREVER),
        ("sleep", "abc", FOREVER),
        ("sleep", "-1", FOREVER),
        ("sleep", "nan", FOREVER),
        ("sleep", "inf", FOREVER),
        ("sleep", "1 2", FOREVER),
        ("true", "extra", FOREVER),
        ("sh", "-c 'unterminated", FOREVER),
    ],
)
def test_outcome_of_command(cmd: str | None, args: str | None, expected: Outcome) -> None:
    """Only sleep N, true and false end on their own; anything else runs until stopped."""
    assert outcome_of(cmd, args) == expected
