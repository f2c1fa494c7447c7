"""`validate` for a newcomer: a misspelt field gets a suggestion, a directory with no SessionSet is not "valid"."""

from __future__ import annotations

import pytest

from controller.cli import main
from tests.controller.conftest import manifest


@pytest.mark.parametrize(("written", "meant", "where"), [
    ("replicsa", "replicas", "spec"), ("restartpolicy", "restartPolicy", "spec"),
    ("cors", "cores", "spec.template"), ("lables", "labels", "metadata"),
])
def test_a_misspelt_field_gets_a_did_you_mean(state, capsys, written, meant, where):
    text = manifest("workers", 2).replace("  replicas: 2\n", "  replicas: 2\n  restartpolicy: Never\n")
    text = {"replicsa": text.replace("  replicas: 2", "  replicsa: 2"),
            "restartpolicy": text,
            "cors": text.replace("    cores: 1", "    cors: 1"),
            "lables": text.replace("  name: workers", "  name: workers\n  lables: {team: a}")}[written]
    (state / "w.yaml").write_text(text)
    assert main(["validate", str(state)]) == 1
    assert f"{where}.{written}: unknown field (did you mean '{meant}'?)" in capsys.readouterr().err


def test_a_field_like_nothing_known_gets_no_suggestion(state, capsys):
    (state / "w.yaml").write_text(manifest("workers", 1).replace("    ram: 1\n", "    ram: 1\n    zzzqqq: 5\n"))
    assert main(["validate", str(state)]) == 1
    err = capsys.readouterr().err
    assert "spec.template.zzzqqq: unknown field\n" in err


def test_a_directory_with_no_sessionset_warns_and_fails_when_strict(state, capsys):
    (state / "notes.txt").write_text("workers: 3\n")
    assert main(["validate", str(state)]) == 0
    warning = capsys.readouterr().err
    assert warning == (f"canfar-controller: warning: {state} defines no SessionSet (manifests are .yaml, .yml or "
                       ".json files with kind: SessionSet); the controller would manage nothing there\n")
    assert main(["validate", "--strict", str(state)]) == 1
    assert capsys.readouterr().err == warning.replace("warning", "error", 1)
    (state / "w.yaml").write_text(manifest("workers", 1))
    assert main(["validate", "--strict", str(state)]) == 0
