"""manifests/kubernetes: a plain, apply-able set, schema-valid and in step with the files it embeds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controller.statedir import parse_file
from tests.deploy import generated
from tests.deploy.kube import (
    check_controller_deployment,
    check_monitoring,
    load_objects,
    mounts,
    one,
    validate_strict,
)

#: The objects; kustomization.yaml only lists them (a base for manifests/overlays).
FILES = sorted(path for path in generated.KUBERNETES.rglob("*.yaml") if path.name != "kustomization.yaml")


def plain_objects() -> list[dict]:
    return load_objects(path.read_text() for path in FILES)


def test_every_manifest_passes_strict_schema_validation() -> None:
    """kubernetes-validate --strict accepts every file (the Prometheus Operator CRDs are skipped)."""
    report = validate_strict(FILES)
    for name in ("deployment", "service", "serviceaccount", "configmap"):
        assert f"passed for resource {name}/" in report


def test_the_set_holds_every_object_the_deployment_needs() -> None:
    """SA, Deployment, state ConfigMap, metrics Service, ServiceMonitor, PrometheusRule, dashboard."""
    assert sorted(o["kind"] for o in plain_objects()) == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "PrometheusRule",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]


def test_core_set_applies_without_the_prometheus_operator() -> None:
    """`kubectl apply -f manifests/kubernetes/` needs only built-in kinds; CRD kinds sit in monitoring/."""
    core = load_objects(path.read_text() for path in generated.KUBERNETES.glob("*.yaml") if path in FILES)
    assert {o["apiVersion"] for o in core} <= {"v1", "apps/v1"}
    assert sorted(o["kind"] for o in core) == ["ConfigMap", "Deployment", "Service", "ServiceAccount"]


def test_deployment_is_a_locked_down_single_writer() -> None:
    """One replica, Recreate, probes, non-root, read-only root, no capabilities, limits, token as a file."""
    check_controller_deployment(one(plain_objects(), "Deployment"))


def test_deployment_mounts_the_objects_of_the_set() -> None:
    """The mounted ConfigMap and ServiceAccount are the ones in the set, not dangling names."""
    objects = plain_objects()
    deployment = one(objects, "Deployment")
    configmaps = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    state = mounts(deployment)["/etc/canfar-controller/sessionsets"]["volume"]["configMap"]["name"]
    assert state in configmaps
    account = one(objects, "ServiceAccount")["metadata"]["name"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account


def test_service_monitor_scrapes_under_the_job_the_alerts_query() -> None:
    """Alerts filter on job="canfar-controller": the ServiceMonitor must produce exactly that job label."""
    objects = plain_objects()
    check_monitoring(
        one(objects, "Service"), one(objects, "ServiceMonitor"), one(objects, "PrometheusRule")["spec"]
    )


@pytest.mark.parametrize("name", sorted(generated.GENERATED))
def test_generated_manifest_matches_its_source(name: str) -> None:
    """The ConfigMaps and PrometheusRule embed manifests/ files verbatim; regenerate after editing those."""
    path = generated.KUBERNETES / name
    assert path.read_text() == generated.GENERATED[name](), (
        f"manifests/kubernetes/{name} is stale: run `.venv/bin/python -m tests.deploy.generated`"
    )


def test_prometheus_rule_spec_is_the_alerts_file() -> None:
    """The PrometheusRule's spec parses to exactly manifests/prometheus/alerts.yaml."""
    rule = one(plain_objects(), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(generated.ALERTS.read_text())


def test_state_configmap_holds_each_example_sessionset() -> None:
    """Every manifests/examples file is a key of the state ConfigMap with identical text."""
    configmap = next(o for o in plain_objects() if o["metadata"]["name"] == "canfar-controller-sessionsets")
    examples = {p.name: p.read_text() for p in generated.EXAMPLES.glob("*.yaml")}
    assert configmap["data"] == examples


@pytest.mark.parametrize("path", sorted(generated.EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_sessionset_is_valid(path: Path) -> None:
    """Each example passes the controller's own strict manifest validation."""
    sets, errors, _ = parse_file(path, prefix="cc")
    assert errors == []
    assert [s.name for s in sets] == [path.stem]


def test_examples_cover_the_demo_cases() -> None:
    """Long-running headless workers, batch jobs that complete (OnFailure), batch jobs that a template change
    never interrupts (OnCompletion), and an interactive session."""
    sets = {s.name: s for p in generated.EXAMPLES.glob("*.yaml") for s in parse_file(p, prefix="cc")[0]}
    assert sets["workers"].spec.replicas == 3 and sets["workers"].spec.restart_policy == "Always"
    assert sets["batch"].spec.restart_policy == "OnFailure" and sets["batch"].spec.template.kind == "headless"
    reduce = sets["reduce"].spec
    assert (reduce.restart_policy, reduce.update_strategy.type, reduce.template.kind) == (
        "OnFailure", "OnCompletion", "headless")
    assert sets["notebook"].spec.template.kind == "notebook" and sets["notebook"].spec.template.cmd is None
