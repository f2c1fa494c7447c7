"""docs/utilisation.md: its example PromQL parses and reads only metrics the controller exports."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.observability.conftest import ROOT, sample_names
from tests.observability.promql import metric_names
from tests.tools import require_tool

DOC = ROOT / "docs" / "utilisation.md"


def examples() -> list[str]:
    """Each query of the doc's PromQL block: comment lines separate them, continuation lines join."""
    [block] = re.findall(r"```promql\n(.*?)```", DOC.read_text(), re.S)
    queries: list[str] = []
    lines: list[str] = []
    for line in [*block.splitlines(), "#"]:
        if line.startswith("#") or not line.strip():
            if lines:
                queries.append(" ".join(lines))
            lines = []
        else:
            lines.append(line.strip())
    return queries


def test_examples_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every example as a recording rule."""
    promtool = require_tool("promtool")
    rules = {"groups": [{"name": "doc", "rules": [{"record": f"doc:example:{i}", "expr": expr}
                                                  for i, expr in enumerate(examples())]}]}
    path = tmp_path / "doc-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert (len(examples()) >= 5, result.returncode) == (True, 0), result.stdout + result.stderr


def test_examples_read_exported_metrics(scrape: Callable[[], str]) -> None:
    """Every metric an example reads is in a real scrape of a populated controller."""
    exported = sample_names(scrape())
    assert {name for expr in examples() for name in metric_names(expr)} - exported == set()
