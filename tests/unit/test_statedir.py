"""Loading and validating the state directory, file by file, with exact locations."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from controller.statedir import StateLoader

GOOD = """\
apiVersion: canfar.controller/v1alpha1
kind: SessionSet
metadata:
  name: {name}
spec:
  replicas: {replicas}
  template:
    kind: headless
    image: images.canfar.net/skaha/astroml:latest
    cores: 2
    ram: 8
    cmd: python
    args: worker.py --queue q
    env: {{QUEUE: q, THREADS: 4}}
  restartPolicy: Always
"""


def good(name: str = "workers", replicas: int = 2) -> str:
    return GOOD.format(name=name, replicas=replicas)


def load(directory: Path, prefix: str = "cc"):
    return StateLoader(directory, prefix=prefix).load()


def test_valid_directory_loads_every_set(tmp_path):
    """Several files, several documents per file, YAML and JSON, all become sets."""
    (tmp_path / "a.yaml").write_text(good("alpha") + "---\n" + good("beta"))
    as_json = {"apiVersion": "canfar.controller/v1alpha1", "kind": "SessionSet", "metadata": {"name": "gamma"},
               "spec": {"replicas": 1, "template": {"image": "images.canfar.net/skaha/notebook:1.0",
                                                     "kind": "notebook"}}}
    (tmp_path / "c.json").write_text(json.dumps(as_json))
    state = load(tmp_path)
    assert sorted(state.sets) == ["alpha", "beta", "gamma"]
    assert state.complete


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ("  replicas: 2", "  replicas: \"2\"", "a.yaml:6: spec.replicas: Input should be a valid integer"),
        ("  replicas: 2", "  replicas: 513", "a.yaml:6: spec.replicas: Input should be less than or equal to 512"),
        ("  replicas: 2", "  replicas: -1", "a.yaml:6: spec.replicas: Input should be greater than or equal to 0"),
        ("    cores: 2", "    cores: 0", "a.yaml:10: spec.template.cores: must be between 1 and 256 (got 0)"),
        ("    ram: 8", "    ram: 9000", "a.yaml:11: spec.template.ram: must be between 1 and 512 (got 9000)"),
        ("    cmd: python", "    cmd: python\n    colour: red", "a.yaml:13: spec.template.colour: unknown field"),
        ("  restartPolicy: Always", "  restartPolicy: Sometimes", "a.yaml:15: spec.restartPolicy: Input should be"),
        ("    kind: headless", "    kind: desktop-app", "a.yaml:8: spec.template.kind: Input should be"),
        ("  name: workers", "  name: Workers_1", "a.yaml:4: metadata.name: must be a lowercase DNS label"),
        ("    args: worker.py --queue q", "    args: worker.py  --queue q", "a.yaml:13: spec.template.args: must be words separated by single spaces"),
        ("    args: worker.py --queue q", "    args: 'worker.py \"a b\"'", "a.yaml:13: spec.template.args: must not contain quotes"),
        ("    env: {QUEUE: q, THREADS: 4}", "    env: {QUEUE: a=b}", "a.yaml:14: spec.template.env: value of 'QUEUE' contains '='"),
        ("    env: {QUEUE: q, THREADS: 4}", "    env: {REPLICA_ID: '3'}", "a.yaml:14: spec.template.env: key 'REPLICA_ID' is set by the controller"),
        ("    env: {QUEUE: q, THREADS: 4}", "    env: {1BAD: x}", "a.yaml:14: spec.template.env: key '1BAD' is not a valid"),
        ("    cmd: python", "    cmd: python -u", "a.yaml:12: spec.template.cmd: must be a single executable"),
        ("    image: images.canfar.net/skaha/astroml:latest", "    image: astroml", "a.yaml:9: spec.template.image: must be a full image reference"),
        ("kind: SessionSet", "kind: SessionSett", "a.yaml:2: kind: Input should be 'SessionSet'"),
    ],
)
def test_each_error_names_file_line_and_field(tmp_path, replace, by, expected):
    """A bad value is reported with the file, the line and the dotted field path."""
    (tmp_path / "a.yaml").write_text(good().replace(replace, by))
    state = load(tmp_path)
    messages = [str(e).replace(str(tmp_path) + "/", "") for e in state.errors]
    assert any(m.startswith(expected) or expected in m for m in messages), messages
    assert "workers" not in state.sets


def test_cmd_on_interactive_kind_is_rejected(tmp_path):
    """cmd/args/env on a notebook would be silently ignored by the service, so they are errors."""
    (tmp_path / "a.yaml").write_text(good().replace("kind: headless", "kind: notebook"))
    [error] = load(tmp_path).errors
    assert "'cmd' is only honoured for headless sessions" in str(error)
    assert error.line == 7 and error.field == "spec.template"


def test_name_too_long_for_the_prefix(tmp_path):
    """A set name that cannot fit a 63-character session name under this prefix is an error."""
    (tmp_path / "a.yaml").write_text(good("w" * 50))
    assert load(tmp_path, prefix="cc").errors[0].message.startswith("must be at most 49 characters")
    (tmp_path / "a.yaml").write_text(good("w" * 49))
    assert load(tmp_path, prefix="cc").complete


def test_yaml_syntax_error_has_a_line(tmp_path):
    """Broken YAML reports where the parser stopped."""
    (tmp_path / "a.yaml").write_text(good() + "  bad: [unclosed\n")
    [error] = load(tmp_path).errors
    assert "invalid YAML" in error.message and error.line is not None


def test_duplicate_key_is_an_error_not_a_silent_override(tmp_path):
    """YAML would keep the second of two equal keys; we refuse the file instead."""
    (tmp_path / "a.yaml").write_text(good().replace("  replicas: 2\n", "  replicas: 2\n  replicas: 20\n"))
    [error] = load(tmp_path).errors
    assert error.message == "duplicate key 'replicas'" and error.line == 7


def test_multi_document_errors_name_the_document(tmp_path):
    """In a file of several documents, the error says which one."""
    (tmp_path / "a.yaml").write_text(good("alpha") + "---\n" + good("beta").replace("replicas: 2", "replicas: x"))
    [error] = load(tmp_path).errors
    assert error.document == 2 and error.line == 22
    assert "document 2: spec.replicas" in str(error)


def test_one_bad_file_never_stops_the_others(tmp_path):
    """A broken file is reported; other files' sets load normally."""
    (tmp_path / "a.yaml").write_text(good("alpha"))
    (tmp_path / "b.yaml").write_text(good("beta").replace("replicas: 2", "replicas: many"))
    state = load(tmp_path)
    assert list(state.sets) == ["alpha"]
    assert list(state.invalid) == ["beta"]
    assert not state.complete


def test_invalid_set_keeps_its_last_good_spec(tmp_path):
    """When a file breaks, its sets keep the spec they had, and are reported invalid."""
    loader = StateLoader(tmp_path, prefix="cc")
    (tmp_path / "a.yaml").write_text(good("alpha", replicas=3))
    assert loader.load().sets["alpha"].spec.replicas == 3
    (tmp_path / "a.yaml").write_text(good("alpha", replicas=3).replace("cores: 2", "cores: lots"))
    state = loader.load()
    assert state.sets["alpha"].spec.replicas == 3
    assert "spec.template.cores" in state.invalid["alpha"]
    (tmp_path / "a.yaml").write_text("{ broken")
    state = loader.load()
    assert state.sets["alpha"].spec.replicas == 3 and "alpha" in state.invalid


def test_never_valid_set_is_not_desired(tmp_path):
    """A set that never validated has no spec to act on: it is only reported invalid."""
    (tmp_path / "a.yaml").write_text(good("alpha").replace("replicas: 2", "replicas: two"))
    state = load(tmp_path)
    assert state.sets == {} and "alpha" in state.invalid


def test_same_set_in_two_files_is_an_error_for_that_set(tmp_path):
    """Two files defining one set: that set is invalid; the files' other sets still apply."""
    (tmp_path / "a.yaml").write_text(good("shared") + "---\n" + good("alpha"))
    (tmp_path / "b.yaml").write_text(good("shared"))
    state = load(tmp_path)
    assert sorted(state.sets) == ["alpha"]
    assert "defined more than once" in state.invalid["shared"]


def test_hidden_files_and_other_suffixes_are_ignored(tmp_path):
    """ConfigMap mounts hold ..data links and hidden timestamped dirs; editors leave backups."""
    (tmp_path / "a.yaml").write_text(good("alpha"))
    (tmp_path / ".a.yaml.swp").write_text("garbage: [")
    (tmp_path / "README.md").write_text("# notes")
    hidden = tmp_path / "..2026_11_25"
    hidden.mkdir()
    (hidden / "a.yaml").write_text(good("alpha"))
    state = load(tmp_path)
    assert list(state.sets) == ["alpha"] and state.complete


def test_missing_directory_is_an_error(tmp_path):
    """A state directory that does not exist is reported, not taken as 'no sets'."""
    state = load(tmp_path / "nope")
    assert not state.complete and "does not exist" in str(state.errors[0])


def test_template_hash_ignores_key_order_and_number_form(tmp_path):
    """The template hash (in session names) is stable across formatting changes."""
    (tmp_path / "a.yaml").write_text(good("alpha"))
    first = load(tmp_path).sets["alpha"].spec.template.hash()
    reordered = good("alpha").replace("    cores: 2\n    ram: 8\n", "    ram: 8.0\n    cores: 2\n")
    (tmp_path / "a.yaml").write_text(reordered.replace("{QUEUE: q, THREADS: 4}", "{THREADS: '4', QUEUE: q}"))
    assert load(tmp_path).sets["alpha"].spec.template.hash() == first


# -- settling: a file is acted on only once its content stopped changing -------------------------


class Settling:
    """A loader with a 1 s settle window whose files all look freshly written (mtime never old)."""

    def __init__(self, directory: Path) -> None:
        self.loader = StateLoader(directory, prefix="cc", settle_window=1.0, wall_clock=lambda: 0.0)

    def replicas(self, now: float) -> dict[str, int]:
        return {name: s.spec.replicas for name, s in self.loader.load(now).sets.items()}


def test_a_torn_write_never_scales_a_set_down(tmp_path):
    """'replicas: 30' read half-written as 'replicas: 3' stays 30 while the writer finishes."""
    path = tmp_path / "w.yaml"
    path.write_text(good(replicas=30))
    settling = Settling(tmp_path)
    assert settling.replicas(0.0) == {}  # a new file waits too
    assert settling.replicas(1.0) == {"workers": 30}
    whole = path.read_text()
    path.write_text(whole[: whole.index("replicas: 30") + len("replicas: 3")])  # the first chunk
    assert settling.replicas(1.2) == {"workers": 30}
    assert not settling.loader.load(1.4).complete  # no pruning while a file is in flux
    path.write_text(whole)  # the rest arrives
    state = settling.loader.load(1.6)
    assert state.unsettled == () and {n: s.spec.replicas for n, s in state.sets.items()} == {"workers": 30}


def test_a_change_applies_once_stable_for_the_window(tmp_path):
    """The same new content on two reads a window apart is acted on; settles_at says when to look."""
    path = tmp_path / "w.yaml"
    path.write_text(good(replicas=2))
    settling = Settling(tmp_path)
    settling.replicas(0.0)
    assert settling.replicas(1.0) == {"workers": 2}
    path.write_text(good(replicas=5))
    state = settling.loader.load(3.0)
    assert state.settles_at == 4.0 and state.unsettled == (str(path),)
    assert settling.replicas(3.5) == {"workers": 2}
    assert settling.replicas(4.0) == {"workers": 5}


def test_a_file_last_written_long_ago_applies_at_once(tmp_path):
    """A file whose mtime is older than the window has settled already (a daemon start, a ConfigMap)."""
    (tmp_path / "w.yaml").write_text(good(replicas=4))
    loader = StateLoader(tmp_path, prefix="cc", settle_window=1.0, wall_clock=lambda: time.time() + 5)
    assert {n: s.spec.replicas for n, s in loader.load(0.0).sets.items()} == {"workers": 4}


def test_a_removed_file_keeps_its_sets_for_the_window(tmp_path):
    """A file deleted and written again (rm then cp) does not make its sets orphans in between."""
    path = tmp_path / "w.yaml"
    path.write_text(good())
    settling = Settling(tmp_path)
    settling.replicas(0.0)
    settling.replicas(1.0)
    path.unlink()
    gap = settling.loader.load(1.5)
    assert set(gap.sets) == {"workers"} and not gap.complete
    gone = settling.loader.load(2.6)  # the absence has settled: the set is removed
    assert gone.sets == {} and gone.complete


@pytest.mark.parametrize("content", ["", "   \n\n", "# only a comment\n", "---\n---\n"])
def test_an_empty_file_is_an_error_and_its_sets_keep_their_last_good_spec(tmp_path, content):
    """Truncate-then-write that stays empty never prunes: the file is invalid, not 'no sets'."""
    path = tmp_path / "w.yaml"
    path.write_text(good(replicas=3))
    loader = StateLoader(tmp_path, prefix="cc")
    loader.load()
    path.write_text(content)
    state = loader.load()
    assert [e.path for e in state.errors] == [str(path)]
    assert "empty" in str(state.errors[0]) or "defines no SessionSet" in str(state.errors[0])
    assert state.sets["workers"].spec.replicas == 3 and not state.complete


def test_an_unchanged_file_is_not_parsed_again(tmp_path):
    """Steady state costs a stat per file: the parsed sets are the very same objects pass after pass."""
    (tmp_path / "w.yaml").write_text(good())
    loader = StateLoader(tmp_path, prefix="cc", settle_window=1.0, wall_clock=lambda: time.time() + 5)
    first = loader.load(0.0).sets["workers"]
    assert loader.load(1.0).sets["workers"] is first
    (tmp_path / "w.yaml").write_text(good(replicas=3))
    assert loader.load(2.0).sets["workers"] is not first


# -- stability: since when each set's file is unchanged, and each removed set absent ----------------


def two_sets(first: str = "alpha", second: str = "beta", replicas: int = 2) -> str:
    return good(first, replicas) + "---\n" + good(second, replicas)


def two_sets_settled(directory: Path) -> tuple[Path, Settling]:
    """``w.yaml`` with sets alpha and beta, written at 0 and settled at 1."""
    path = directory / "w.yaml"
    path.write_text(two_sets())
    settling = Settling(directory)
    settling.loader.load(0.0)
    settling.loader.load(1.0)
    return path, settling


def test_each_set_reports_since_when_its_file_is_unchanged(tmp_path):
    """The newest content's first read, even before it settles; a touch with the same content changes nothing."""
    (tmp_path / "a.yaml").write_text(good("alpha"))
    (tmp_path / "b.yaml").write_text(good("beta"))
    settling = Settling(tmp_path)
    settling.loader.load(0.0)
    assert settling.loader.load(1.0).unchanged_since == {"alpha": 0.0, "beta": 0.0}
    (tmp_path / "a.yaml").write_text(good("alpha", replicas=3))
    during = settling.loader.load(10.0)
    assert during.sets["alpha"].spec.replicas == 2  # not settled yet, but the file did change
    assert during.unchanged_since == {"alpha": 10.0, "beta": 0.0}
    assert settling.loader.load(11.0).unchanged_since == {"alpha": 10.0, "beta": 0.0}
    (tmp_path / "a.yaml").write_text(good("alpha", replicas=3))  # rewritten, same content
    assert settling.loader.load(20.0).unchanged_since["alpha"] == 10.0


def test_a_file_written_long_ago_has_been_unchanged_since_its_mtime(tmp_path):
    """A daemon start does not make every old file look new: its mtime says how long it has been stable."""
    (tmp_path / "w.yaml").write_text(good())
    loader = StateLoader(tmp_path, prefix="cc", settle_window=1.0, wall_clock=lambda: time.time() + 100)
    state = loader.load(1000.0)
    assert 899.0 <= state.unchanged_since["workers"] <= 900.5
    assert state.directory_unchanged_since is not None and state.directory_unchanged_since <= 900.5


def test_a_set_removed_from_its_file_reports_since_when(tmp_path):
    """The second set of a file goes: absent since the change; a set moved to another file is not removed."""
    path, settling = two_sets_settled(tmp_path)
    path.write_text(good("alpha"))  # beta removed (or a write torn after the first document)
    settling.loader.load(5.0)
    state = settling.loader.load(6.0)
    assert set(state.sets) == {"alpha"} and state.removed_since == {"beta": 5.0}
    assert state.directory_unchanged_since == 5.0
    path.write_text(good("alpha", replicas=4))  # the file changes again: the removal is that recent
    settling.loader.load(8.0)
    assert settling.loader.load(9.0).removed_since == {"beta": 8.0}
    (tmp_path / "b.yaml").write_text(good("beta"))  # beta comes back in another file
    settling.loader.load(12.0)
    back = settling.loader.load(13.0)
    assert set(back.sets) == {"alpha", "beta"} and back.removed_since == {}
    assert back.unchanged_since["beta"] == 12.0


def test_a_deleted_file_reports_its_sets_absent_since_the_deletion_was_seen(tmp_path):
    """The file is forgotten once its absence settles; its sets' removal time is kept."""
    path, settling = two_sets_settled(tmp_path)
    path.unlink()
    assert settling.loader.load(3.0).removed_since == {}  # still counted as there
    gone = settling.loader.load(4.5)
    assert gone.sets == {} and gone.removed_since == {"alpha": 3.0, "beta": 3.0}
    assert settling.loader.load(60.0).removed_since == {"alpha": 3.0, "beta": 3.0}


def test_the_directory_reports_its_last_change_for_sets_removed_unseen(tmp_path):
    """A restarted loader never saw the set go: a file deleted since its start shows in the directory's time."""
    (tmp_path / "a.yaml").write_text(good("alpha"))
    (tmp_path / "b.yaml").write_text(good("beta"))
    settling = Settling(tmp_path)
    settling.loader.load(0.0)
    assert settling.loader.load(20.0).directory_unchanged_since == 0.0
    (tmp_path / "b.yaml").unlink()
    assert settling.loader.load(30.0).directory_unchanged_since == 30.0


def test_a_state_loaded_without_a_clock_reports_no_times(tmp_path):
    """``load()`` (validate, restart) reads every file as settled and says nothing about stability."""
    (tmp_path / "w.yaml").write_text(good())
    state = StateLoader(tmp_path, prefix="cc").load()
    assert state.unchanged_since == {} and state.removed_since == {} and state.directory_unchanged_since is None


def test_a_restarted_loader_sees_a_recent_deletion_in_the_directory_mtime(tmp_path):
    """The remaining files are old, but a file was deleted 5 s ago: the directory changed 5 s ago."""
    (tmp_path / "a.yaml").write_text(good("alpha"))
    (tmp_path / "b.yaml").write_text(good("beta"))
    (tmp_path / "b.yaml").unlink()
    wall = time.time()
    os.utime(tmp_path / "a.yaml", (wall - 1000, wall - 1000))
    os.utime(tmp_path, (wall - 5, wall - 5))
    state = StateLoader(tmp_path, prefix="cc", settle_window=1.0, wall_clock=lambda: wall).load(2000.0)
    assert state.unchanged_since == {"alpha": 1000.0}
    assert state.directory_unchanged_since == 1995.0
