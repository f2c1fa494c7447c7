"""Reading Kubernetes objects and checking the properties both deployment paths (plain set, chart) promise."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from tests.tools import require_tool

#: Kubernetes versions the manifests must be valid for: an older supported release and the newest.
KUBE_VERSIONS = ("1.30.0", "1.37.0")
KUBE_VERSION = KUBE_VERSIONS[-1]
STATE_DIR = "/etc/canfar-controller/sessionsets"
TOKEN_DIR = "/var/run/secrets/canfar"
STATUS_DIR = "/var/lib/canfar-controller"
#: The image's own default (CANFAR_CONTROLLER_STATUS_FILE in the Dockerfile): `kubectl exec ... canfar-controller
#: status` or `restart SET` in the pod find the daemon's files only if the Deployment uses the same one.
STATUS_FILE = f"{STATUS_DIR}/status.json"

Obj = dict[str, Any]


def load_objects(texts: Iterable[str]) -> list[Obj]:
    return [doc for text in texts for doc in yaml.safe_load_all(text) if doc]


def one(objects: list[Obj], kind: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def kinds(objects: list[Obj]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def validate_strict(files: list[Path]) -> str:
    """Run ``kubernetes-validate --strict`` on ``files`` for each version; fail unless every file passes."""
    tool = require_tool("kubernetes-validate")
    reports = []
    for version in KUBE_VERSIONS:
        proc = subprocess.run(
            [tool, "-k", version, "--strict", *map(str, files)], capture_output=True, text=True, timeout=300
        )
        report = proc.stdout + proc.stderr
        assert proc.returncode == 0, report
        assert "ERROR" not in report, report
        reports.append(report)
    return "\n".join(reports)


def container(deployment: Obj) -> Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def mounts(deployment: Obj) -> dict[str, Obj]:
    """Mount path -> (the volumeMount merged with its volume)."""
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    return {
        m["mountPath"]: {**m, "volume": volumes[m["name"]]} for m in container(deployment)["volumeMounts"]
    }


def arg(deployment: Obj, flag: str) -> str | None:
    """The value of ``--flag=value`` in the container's args."""
    for item in container(deployment).get("args", []):
        if item.startswith(f"{flag}="):
            return item.split("=", 1)[1]
    return None


def check_controller_deployment(deployment: Obj) -> None:
    """The promises of the issue: single writer, probes, locked-down container, files not env for secrets."""
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    box = container(deployment)
    assert box["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert box["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert box["securityContext"]["readOnlyRootFilesystem"] is True
    assert box["securityContext"]["allowPrivilegeEscalation"] is False
    assert box["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert set(box["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(box["resources"]["requests"]) & set(box["resources"]["limits"])
    assert box["args"][0] == "run"
    volumes = mounts(deployment)
    # The state dir is the ConfigMap itself, mounted as a directory: a subPath mount would never see edits.
    assert arg(deployment, "--state") == STATE_DIR
    assert "configMap" in volumes[STATE_DIR]["volume"] and "subPath" not in volumes[STATE_DIR]
    assert arg(deployment, "--token-file") == f"{TOKEN_DIR}/token"
    assert "secret" in volumes[TOKEN_DIR]["volume"]
    # Everything the controller writes is on a volume, since the root filesystem is read-only.
    # The status file, and the ledger and restart requests beside it, must be on a writable volume.
    assert arg(deployment, "--status-file") == STATUS_FILE
    assert not volumes[STATUS_DIR].get("readOnly", False)
    assert {"emptyDir", "persistentVolumeClaim"} & set(volumes[STATUS_DIR]["volume"])
    assert not any("TOKEN" in env["name"] and "value" in env for env in box.get("env", []))
    assert arg(deployment, "--metrics-host") == "0.0.0.0"
    port = int(arg(deployment, "--metrics-port") or 0)
    assert box["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]


def check_monitoring(service: Obj, monitor: Obj, alert_rules: Obj) -> None:
    """The ServiceMonitor scrapes the metrics Service under the job name the alert rules query."""
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    job = service["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    queried = set(re.findall(r'job="([^"]+)"', yaml.safe_dump(alert_rules)))
    assert queried == {job}, f"alert rules query job {queried}, the ServiceMonitor yields job {job!r}"
