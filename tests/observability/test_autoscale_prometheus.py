"""A Prometheus signal end to end: a real Prometheus scrapes a small exporter the test controls, and the
controller (in process, against the simulator) queries it to scale a set up and down."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from controller.signals import SignalReader
from controller.spec import SessionSet
from tests.observability.test_prometheus_e2e import free_port, start, stop
from tests.reliability.rig import IMAGE, Rig
from tests.tools import require_tool

pytestmark = pytest.mark.slow

SCALED = f"""\
apiVersion: canfar.controller/v1alpha1
kind: SessionSet
metadata:
  name: lsst
spec:
  template: {{image: {IMAGE}, cores: 1, ram: 1, cmd: sleep, args: "100000"}}
  autoscale:
    maxReplicas: 20
    target: 5
    signals:
      - prometheus: {{url: "{{url}}", query: 'sum(pending_jobs{{queue="lsst"}})'}}
    scaleDown: {{stabilizationSeconds: 0, policy: Destroy}}
"""


class Exporter(BaseHTTPRequestHandler):
    """``pending_jobs`` for two queues; the test sets the lsst one."""

    pending = 0.0

    def do_GET(self) -> None:
        body = f'pending_jobs{{queue="lsst"}} {Exporter.pending}\npending_jobs{{queue="other"}} 3\n'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = require_tool("prometheus")
    tmp_path = tmp_path_factory.mktemp("signal")
    exporter = ThreadingHTTPServer(("127.0.0.1", 0), Exporter)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    port = free_port()
    config = {"global": {"scrape_interval": "1s"},
              "scrape_configs": [{"job_name": "queue", "static_configs": [
                  {"targets": [f"127.0.0.1:{exporter.server_address[1]}"]}]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    process = start([binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'db'}",
                     f"--web.listen-address=127.0.0.1:{port}"], tmp_path / "prometheus.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)
        exporter.shutdown()
        exporter.server_close()


def scraped(prometheus: str, value: float) -> None:
    """Wait until Prometheus has scraped ``value`` for the lsst queue."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            result = httpx.get(f"{prometheus}/api/v1/query", params={"query": 'pending_jobs{queue="lsst"}'},
                               timeout=5).json()["data"]["result"]
            if result and float(result[0]["value"][1]) == value:
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.3)
    pytest.fail(f"Prometheus never scraped pending_jobs = {value}")


def test_a_prometheus_signal_drives_a_set_up_and_down(prometheus: str, tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    try:
        rig.write("lsst", SCALED.replace("{url}", prometheus))
        Exporter.pending = 42
        scraped(prometheus, 42)
        rig.passes(3, every=10.0)
        assert sorted(slot for (_, slot) in rig.live_by_slot("lsst")) == list(range(1, 10))  # ceil(42 / 5)
        Exporter.pending = 12
        scraped(prometheus, 12)
        rig.passes(5, every=10.0)  # a scale-down waits at least --destructive-settle (30 s)
        assert sorted(slot for (_, slot) in rig.live_by_slot("lsst")) == [1, 2, 3]  # Destroy: the highest go
    finally:
        rig.close()


@pytest.mark.parametrize(("query", "expected"), [
    ('sum(pending_jobs{queue="other"})', (3.0, None)),
    ('pending_jobs{queue="nobody"}', (0.0, None)),  # an empty vector reads as 0
    ("pending_jobs", (None, "the query gave 2 series; it must give one (sum it, for example)")),
    ("sum(", (None, "HTTP 400: invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis")),
])
def test_prometheus_query_answers(prometheus: str, query: str, expected: tuple[float | None, str | None]) -> None:
    scraped(prometheus, Exporter.pending)
    sets = {"q": SessionSet.model_validate({
        "apiVersion": "canfar.controller/v1alpha1", "kind": "SessionSet", "metadata": {"name": "q"},
        "spec": {"template": {"image": IMAGE}, "autoscale": {
            "maxReplicas": 4, "target": 1, "signals": [{"prometheus": {"url": prometheus, "query": query}}]}}})}

    async def once() -> tuple[float | None, str | None]:
        reader = SignalReader(grace=5.0)
        try:
            reader.start(sets)
            [reading] = (await reader.collect(sets))["q"]
            return reading.value, reading.error
        finally:
            await reader.aclose()

    assert asyncio.run(once()) == expected
