"""The manifests/kubernetes files that wrap other files of the repository, derived from them.

manifests/kubernetes is a plain, apply-able set (monitoring/ holds the optional Prometheus Operator
and Grafana objects), so it cannot include files the way the Helm chart
does. The ConfigMap of example SessionSets, the PrometheusRule and the dashboard ConfigMap therefore
embed manifests/examples, manifests/prometheus/alerts.yaml and manifests/grafana/canfar-controller.json
verbatim; the deploy tests fail on any difference. After changing one of those sources, rewrite them:

    .venv/bin/python -m tests.deploy.generated
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
KUBERNETES = MANIFESTS / "kubernetes"
EXAMPLES = MANIFESTS / "examples"
ALERTS = MANIFESTS / "prometheus" / "alerts.yaml"
DASHBOARD = MANIFESTS / "grafana" / "canfar-controller.json"

LABELS = (
    "  labels:\n    app.kubernetes.io/name: canfar-controller\n    app.kubernetes.io/component: controller\n"
)
SIDECAR_LABEL = (
    '    # Picked up by Grafana\'s dashboard sidecar (its default label).\n    grafana_dashboard: "1"\n'
)
HEADER = "# Generated from {source} by `python -m tests.deploy.generated`; edit the source, not this file.\n"


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "".join(pad + line if line.strip() else line for line in text.splitlines(keepends=True))


def _block(text: str) -> str:
    """A YAML literal block indicator that keeps ``text``'s trailing newlines exactly."""
    if not text.endswith("\n"):
        return "|-"
    return "|+" if text.endswith("\n\n") else "|"


def _configmap(name: str, files: Mapping[str, str], *, source: str, extra_labels: str = "") -> str:
    out = [HEADER.format(source=source), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n", f"  name: {name}\n"]
    out += [LABELS, extra_labels, "data:\n"]
    for key, text in sorted(files.items()):
        out.append(f"  {key}: {_block(text)}\n{_indent(text, 4)}")
        if not text.endswith("\n"):
            out.append("\n")
    return "".join(out)


def sessionsets_configmap() -> str:
    files = {path.name: path.read_text() for path in sorted(EXAMPLES.glob("*.yaml"))}
    return _configmap("canfar-controller-sessionsets", files, source="manifests/examples/*.yaml")


def prometheus_rule() -> str:
    return (
        HEADER.format(source="manifests/prometheus/alerts.yaml")
        + "# Needs the Prometheus Operator CRDs (monitoring.coreos.com).\n"
        + "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: canfar-controller\n"
        + LABELS
        + "spec:\n"
        + _indent(ALERTS.read_text(), 2)
    )


def dashboard_configmap() -> str:
    return _configmap(
        "canfar-controller-dashboard",
        {DASHBOARD.name: DASHBOARD.read_text()},
        source="manifests/grafana/canfar-controller.json",
        extra_labels=SIDECAR_LABEL,
    )


#: file in manifests/kubernetes -> how to produce its text
GENERATED = {
    "sessionsets-configmap.yaml": sessionsets_configmap,
    "monitoring/prometheusrule.yaml": prometheus_rule,
    "monitoring/grafana-dashboard-configmap.yaml": dashboard_configmap,
}


def main() -> None:
    for name, produce in GENERATED.items():
        (KUBERNETES / name).write_text(produce())
        print(f"wrote manifests/kubernetes/{name}")


if __name__ == "__main__":
    main()
