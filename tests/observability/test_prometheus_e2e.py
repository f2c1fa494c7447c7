"""End to end: a real Prometheus scrapes the daemon running against the simulator.

The daemon (``canfar-controller run --simulator``) manages one SessionSet on the embedded
simulator; Prometheus (Debian's package, on loopback) scrapes it every second and evaluates the
shipped alert rules. The query API must then report the simulator's configured capacity and the
set's desired and running counts, and every rule must evaluate without error.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.observability.conftest import PROMETHEUS_DIR
from tests.observability.test_dashboard import dashboard, expressions, substitute
from tests.tools import require_tool

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # starts Prometheus, waits for scrapes

CORES = 48.0  # not the simulator's default (64), so the figure must come from the configuration
REPLICAS = 2
GPUS = 2  # the trainers set's one session asks for GPUs, so the dashboard's GPU panel has data
DEADLINE = 60.0  # seconds for everything to converge; Prometheus alone needs ~6 s for its first scrape
MANIFEST = f"""\
apiVersion: canfar.controller/v1alpha1
kind: SessionSet
metadata: {{name: workers}}
spec: {{replicas: {REPLICAS}, template: {{kind: headless, image: images.canfar.net/skaha/astroml:latest,
  cmd: sleep, args: "100000"}}}}
---
apiVersion: canfar.controller/v1alpha1
kind: SessionSet
metadata: {{name: trainers}}
spec: {{replicas: 1, template: {{kind: headless, image: images.canfar.net/skaha/astroml:latest,
  cores: 2, ram: 4, gpu: {GPUS}, cmd: sleep, args: "100000"}}}}
"""

AUTOSCALED = """\
apiVersion: canfar.controller/v1alpha1
kind: SessionSet
metadata: {{name: queue}}
spec: {{autoscale: {{maxReplicas: 4, target: 5, signals: [{{file: {depth}}}]}},
  template: {{kind: headless, image: images.canfar.net/skaha/astroml:latest, cmd: sleep, args: "100000"}}}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def wait_for(what: str, observe: Callable[[], Any], expected: Any, logs: list[Path]) -> Any:
    """Poll ``observe`` until it returns ``expected``, or fail with the last observation and the logs."""
    deadline = time.monotonic() + DEADLINE
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = observe()
        except (httpx.HTTPError, ValueError) as error:  # not up yet, or a 503 page instead of JSON
            last = error
        if last == expected:
            return last
        time.sleep(0.5)
    tails = "\n".join(f"--- {log.name} ---\n{log.read_text(errors='replace')[-3000:]}" for log in logs)
    pytest.fail(
        f"timed out waiting for {what}: last saw {last!r}, expected {expected!r}\n{tails}", pytrace=False
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The daemon on the simulator plus a Prometheus scraping it, shared by this module's tests."""
    tmp_path = tmp_path_factory.mktemp("e2e")
    controller = require_tool("canfar-controller")
    prometheus = require_tool("prometheus")
    state = tmp_path / "state"
    state.mkdir()
    (state / "workers.yaml").write_text(MANIFEST)
    # An autoscaled set, so that the dashboard's Autoscaling row has data to show.
    (tmp_path / "depth").write_text("10\n")
    (state / "queue.yaml").write_text(AUTOSCALED.format(depth=tmp_path / "depth"))
    metrics_port, prometheus_port = free_port(), free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(PROMETHEUS_DIR / "alerts.yaml")],
        "scrape_configs": [
            {"job_name": "canfar-controller", "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    logs = [tmp_path / "controller.log", tmp_path / "prometheus.log"]
    processes = [
        start(
            [
                controller,
                "run",
                "--simulator",
                "--simulator-cores",
                str(CORES),
                "--state",
                str(state),
                "--status-file",
                str(tmp_path / "status.json"),
                "--metrics-port",
                str(metrics_port),
                "--interval",
                "1",
                "--stats-interval",
                "1",
            ],
            logs[0],
        ),
    ]
    try:
        processes.append(
            start(
                [
                    prometheus,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                ],
                logs[1],
            )
        )
        yield {
            "controller": f"http://127.0.0.1:{metrics_port}",
            "prometheus": f"http://127.0.0.1:{prometheus_port}",
            "logs": logs,
        }
    finally:
        for process in processes:
            stop(process)


def query(base: str, promql: str) -> float | None:
    """The value of a single-series instant query, or None while there is none."""
    response = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=5)
    response.raise_for_status()
    result = response.json()["data"]["result"]
    return float(result[0]["value"][1]) if len(result) == 1 else None


def test_prometheus_sees_capacity_and_sets(stack: dict[str, Any]) -> None:
    """Prometheus' query API returns the simulator's capacity and the set's desired and running counts."""
    base = stack["prometheus"]
    wanted = {
        'canfar_platform_cpu_cores_available{job="canfar-controller"}': CORES,
        'canfar_controller_sessionset_desired_replicas{sessionset="workers"}': REPLICAS,
        'canfar_controller_sessions{sessionset="workers",status="Running"}': REPLICAS,
        'canfar_controller_sessionset_requested_gpus{sessionset="trainers",status="Running"}': GPUS,
        'canfar_controller_sessionset_requested_cpu_cores{sessionset="trainers",status="Running"}': 2.0,
        # The simulator's metrics backend reports a tenth of the request in use.
        'canfar_controller_sessionset_cpu_cores_in_use{sessionset="trainers",status="Running"}': 0.2,
        # workers (1 core each), trainers (2) and the autoscaled queue's two sessions (1 core each).
        'canfar_controller_account_requested_cpu_cores{owner="controller",status="Running"}': REPLICAS + 2.0 + 2,
        'canfar_controller_autoscale_recommended_replicas{sessionset="queue"}': 2,
        'canfar_controller_sessionset_desired_replicas{sessionset="queue"}': 2,
    }

    def observe() -> dict[str, float | None]:
        return {promql: query(base, promql) for promql in wanted}

    wait_for("the scraped figures", observe, wanted, stack["logs"])


def test_daemon_probes_answer_ok(stack: dict[str, Any]) -> None:
    """The running daemon's /healthz and /readyz answer 200 once it has listed the sessions."""
    base = stack["controller"]

    def observe() -> list[int]:
        return [httpx.get(f"{base}{path}", timeout=5).status_code for path in ("/healthz", "/readyz")]

    wait_for("/healthz and /readyz", observe, [200, 200], stack["logs"])


def test_alert_rules_load_and_evaluate(stack: dict[str, Any]) -> None:
    """Prometheus loads every shipped alert rule and evaluates each without error against real data."""
    base = stack["prometheus"]
    shipped = {
        rule["alert"]
        for group in yaml.safe_load((PROMETHEUS_DIR / "alerts.yaml").read_text())["groups"]
        for rule in group["rules"]
    }

    def observe() -> dict[str, str] | None:
        # Wait for real data first, so the rules are evaluated against the controller's series.
        if query(base, 'canfar_controller_build_info{job="canfar-controller"}') is None:
            return None
        groups = httpx.get(f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"]
        return {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}

    wait_for("healthy alert rules", observe, dict.fromkeys(shipped, "ok"), stack["logs"])


def test_dashboard_queries_run(stack: dict[str, Any]) -> None:
    """Every dashboard query runs on the real Prometheus, and those without rate() return data."""
    base = stack["prometheus"]
    queries = [substitute(expr) for _, expr in expressions(dashboard())]

    def observe() -> dict[str, str]:
        outcome = {}
        for promql in queries:
            body = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=5).json()
            has_data = bool(body.get("data", {}).get("result"))
            # Rates need two scrapes, manifest errors need a broken file and a credential expiry needs a
            # credential that expires (this daemon's demo token does not): only require parsing there.
            outcome[promql] = (
                body["status"] if has_data or "rate(" in promql or "manifest" in promql
                or "credential_expiry" in promql else "no data"
            )
        return outcome

    wait_for("dashboard queries", observe, dict.fromkeys(queries, "success"), stack["logs"])
