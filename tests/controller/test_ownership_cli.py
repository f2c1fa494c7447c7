"""``prune`` and ``status`` against the simulator over loopback: leftovers go only on purpose, and sessions
with our prefix that are not ours are shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.cli import main
from controller.ledger import ledger_paths
from tests.controller.conftest import TOKEN, Service, manifest, wait_until


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, service: Service, tmp_path: Path) -> Service:
    monkeypatch.setenv("CANFAR_URL", service.url)
    monkeypatch.setenv("CANFAR_TOKEN", TOKEN)
    monkeypatch.setenv("CANFAR_CONTROLLER_STATUS_FILE", str(tmp_path / "status.json"))
    monkeypatch.setenv("CANFAR_CONTROLLER_METRICS_PORT", "0")
    return service


def run_once(state: Path) -> None:
    assert main(["run", "--state", str(state), "--once"]) == 0


def test_prune_lists_then_removes_only_the_leftovers_of_a_lost_memory(env: Service, state: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (state / "alpha.yaml").write_text(manifest("alpha", 2))
    (state / "beta.yaml").write_text(manifest("beta", 1))
    run_once(state)
    wait_until(lambda: len(env.live()) == 3, what="three sessions")
    # The memory volume is lost, and beta was removed meanwhile.
    for path in ledger_paths(tmp_path / "status.json"):
        path.unlink(missing_ok=True)
    (state / "beta.yaml").unlink()
    capsys.readouterr()
    assert main(["prune", "--state", str(state)]) == 1  # nothing claims anything yet: it would remove all
    assert "no controller memory" in capsys.readouterr().err
    run_once(state)
    run_once(state)
    assert env.requests("DELETE") == [] and len(env.live("cc-beta-")) == 1  # unmanaged: left alone
    [leftover] = [s["id"] for s in env.live("cc-beta-")]
    capsys.readouterr()
    assert main(["prune", "--state", str(state)]) == 2  # a dry run that found something
    out = capsys.readouterr().out
    assert "would destroy 1 leftover session(s)" in out and leftover in out and "set beta" in out
    assert env.requests("DELETE") == [] and "cc-alpha-" not in out
    assert main(["prune", "--state", str(state), "--yes"]) == 0
    assert f"destroyed {leftover}" in capsys.readouterr().out
    assert [r.path for r in env.requests("DELETE")] == [f"/session/{leftover}"]
    assert main(["prune", "--state", str(state)]) == 0
    assert "nothing to prune" in capsys.readouterr().out
    assert len(env.live("cc-alpha-")) == 2


def test_prune_without_a_memory_destroys_nothing(env: Service, state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (state / "alpha.yaml").write_text(manifest("alpha", 1))
    env.create("cc-alpha-abcdef-1")
    assert main(["prune", "--state", str(state), "--yes"]) == 1
    assert "no controller memory" in capsys.readouterr().err
    assert env.requests("DELETE") == []


def test_status_shows_a_second_writer_and_unmanaged_sessions(env: Service, state: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    (state / "alpha.yaml").write_text(manifest("alpha", 2))
    assert main(["run", "--state", str(state), "--once"]) == 0
    template = env.live("cc-alpha-")[0]["name"].rsplit("-", 1)[0]
    theirs = env.create(f"{template}-9")  # another writer, same prefix and set
    env.create("cc-beta-abcdef-1")  # another controller's set
    assert main(["run", "--state", str(state), "--once"]) == 0
    capsys.readouterr()
    assert main(["status", "--state", str(state)]) == 0
    out = capsys.readouterr().out
    [alpha] = [line for line in out.splitlines() if line.startswith("alpha ")]
    assert "Conflict" in alpha and theirs in alpha
    assert f"Conflict (SecondWriter) alpha: another writer's live sessions {theirs}; nothing is created" in out
    assert "unmanaged beta: 1 session(s)" in out
    assert env.requests("DELETE") == []  # slot 9 is above the count, but not ours to scale down
