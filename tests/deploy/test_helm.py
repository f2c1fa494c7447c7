"""helm/canfar-controller through the real Helm engine (helm-python-sdk): lint, render, schema, validation."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from controller.cli import build_parser
from controller.cli.config import ControllerSettings
from controller.spec import API_VERSION, SessionSet
from controller.statedir import parse_file
from tests.deploy import generated
from tests.deploy.kube import (
    KUBE_VERSION,
    STATUS_DIR,
    Obj,
    arg,
    check_controller_deployment,
    check_monitoring,
    container,
    kinds,
    load_objects,
    mounts,
    one,
    validate_strict,
)
from tests.tools import missing

CHART = generated.ROOT / "helm" / "canfar-controller"
EXAMPLE_SETS = {
    path.stem: yaml.safe_load(path.read_text())["spec"] for path in sorted(generated.EXAMPLES.glob("*.yaml"))
}
EVERYTHING_ON = {
    "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
    "grafanaDashboard": {"enabled": True},
}

#: value combinations -> the kinds they must render
COMBINATIONS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "defaults": ({}, ["ConfigMap", "Deployment", "Service", "ServiceAccount"]),
    "created-secret": (
        {"token": {"value": "tok-value-123"}},
        ["ConfigMap", "Deployment", "Secret", "Service", "ServiceAccount"],
    ),
    "existing-secret": (
        {"token": {"existingSecret": "my-token", "existingSecretKey": "bearer"}},
        ["ConfigMap", "Deployment", "Service", "ServiceAccount"],
    ),
    "optional-off": (
        {
            "metrics": {"service": {"enabled": False}},
            "serviceAccount": {"create": False},
            "existingSessionSetsConfigMap": "my-sets",
        },
        ["Deployment"],
    ),
    "persistence-created-claim": (
        {"persistence": {"enabled": True, "size": "2Gi", "storageClass": "fast"}},
        ["ConfigMap", "Deployment", "PersistentVolumeClaim", "Service", "ServiceAccount"],
    ),
    "persistence-existing-claim": (
        {"persistence": {"enabled": True, "existingClaim": "my-claim"}},
        ["ConfigMap", "Deployment", "Service", "ServiceAccount"],
    ),
    "everything-on": (
        {**EVERYTHING_ON, "sessionSets": EXAMPLE_SETS, "token": {"value": "t"}},
        [
            "ConfigMap",
            "ConfigMap",
            "Deployment",
            "PrometheusRule",
            "Secret",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ],
    ),
}


@pytest.fixture(scope="module")
def helm() -> Any:
    try:
        import helm_python
    except ImportError:
        missing("helm-python-sdk (pip install helm-python-sdk==0.2.2)")
    helm_python.disable_logging()
    return helm_python


@pytest.fixture(scope="module")
def chart(helm: Any) -> Any:
    return helm.Chart.load(str(CHART))


def render(chart: Any, values: dict[str, Any]) -> dict[str, str]:
    """Template files -> rendered YAML, as `helm template rel . -n canfar` would print them."""
    out = chart.render(values, name="rel", namespace="canfar", is_install=True)
    return {name: text for name, text in out.items() if name.endswith(".yaml") and text.strip()}


def render_objects(chart: Any, values: dict[str, Any]) -> list[Obj]:
    return load_objects(render(chart, values).values())


def test_chart_lints_clean_in_strict_mode(helm: Any) -> None:
    """`helm lint --strict`: no errors and nothing above INFO."""
    report = helm.lint(str(CHART), strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] > 1] == []


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_render_passes_strict_schema_validation(chart: Any, combination: str, tmp_path: Path) -> None:
    """Each value combination renders the expected objects, all accepted by kubernetes-validate --strict."""
    values, expected_kinds = COMBINATIONS[combination]
    rendered = render(chart, values)
    assert kinds(load_objects(rendered.values())) == expected_kinds
    files = []
    for name, text in rendered.items():
        files.append(tmp_path / Path(name).name)
        files[-1].write_text(text)
    validate_strict(files)


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_rendered_deployment_is_a_locked_down_single_writer(chart: Any, combination: str) -> None:
    """Whatever the values, the Deployment keeps the promises the plain manifests make."""
    check_controller_deployment(one(render_objects(chart, COMBINATIONS[combination][0]), "Deployment"))


def test_values_reach_the_controller_flags(chart: Any) -> None:
    """Interval, prefix, concurrency, server URL, image and resources come from the values."""
    values = {
        "controller": {"interval": 45, "prefix": "team-a", "concurrency": 64},
        "server": {"url": "https://sessions.example.org/skaha/v1"},
        "image": {"repository": "reg.example.org/cc", "tag": "1.2.3"},
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
    }
    deployment = one(render_objects(chart, values), "Deployment")
    assert (arg(deployment, "--interval"), arg(deployment, "--prefix")) == ("45", "team-a")
    assert arg(deployment, "--concurrency") == "64"
    assert arg(deployment, "--server") == "https://sessions.example.org/skaha/v1"
    box = deployment["spec"]["template"]["spec"]["containers"][0]
    assert box["image"] == "reg.example.org/cc:1.2.3"
    assert box["resources"] == values["resources"]


def run_settings(deployment: Obj) -> ControllerSettings:
    """The settings `canfar-controller run` makes of the container's args, parsed by the real CLI."""
    args = build_parser().parse_args(container(deployment)["args"])
    overrides = {key: value for key, value in vars(args).items()
                 if key in ControllerSettings.model_fields and value is not None}
    return ControllerSettings(**overrides)


def test_default_flags_are_the_controllers_defaults(chart: Any) -> None:
    """With the chart's defaults the controller runs with its own lifecycle defaults, capacity checks on."""
    settings = run_settings(one(render_objects(chart, {}), "Deployment"))
    defaults = ControllerSettings()
    assert settings.destructive_settle == defaults.destructive_settle
    assert (settings.session_expiry, settings.renew_when_remaining, settings.pending_limit, settings.capacity,
            settings.terminating_limit) == (
        defaults.session_expiry, defaults.renew_when_remaining, defaults.pending_limit, True, defaults.terminating_limit)


def test_lifecycle_values_reach_the_controller(chart: Any) -> None:
    """Session expiry, renewal point, pending limit and capacity checks come from the values, as the CLI reads them."""
    values = {"controller": {"sessionExpiry": 1209600, "renewWhenRemaining": 0.5, "pendingLimit": 1800,
                             "capacity": False, "interval": 12.5, "terminatingLimit": 900}}
    deployment = one(render_objects(chart, values), "Deployment")
    settings = run_settings(deployment)
    assert (settings.session_expiry, settings.renew_when_remaining, settings.pending_limit, settings.capacity,
            settings.interval, settings.terminating_limit) == (1209600, 0.5, 1800, False, 12.5, 900)
    assert "--no-capacity" in container(deployment)["args"]


def test_destructive_settle_reaches_the_controller(chart: Any) -> None:
    """0 (act at once) is a valid value and reaches the flag as the CLI reads it."""
    for value in (0, 120):
        deployment = one(render_objects(chart, {"controller": {"destructiveSettle": value}}), "Deployment")
        assert run_settings(deployment).destructive_settle == value


def test_status_volume_is_the_claim_when_persistence_is_on(chart: Any) -> None:
    """persistence.enabled mounts a claim at the status directory: the created one, or the existing one."""
    created = render_objects(chart, COMBINATIONS["persistence-created-claim"][0])
    claim = one(created, "PersistentVolumeClaim")
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    status = mounts(one(created, "Deployment"))[STATUS_DIR]["volume"]
    assert status["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"]}
    existing = render_objects(chart, COMBINATIONS["persistence-existing-claim"][0])
    status = mounts(one(existing, "Deployment"))[STATUS_DIR]["volume"]
    assert status["persistentVolumeClaim"] == {"claimName": "my-claim"}
    default = mounts(one(render_objects(chart, {}), "Deployment"))[STATUS_DIR]["volume"]
    assert default["emptyDir"]["sizeLimit"] == "64Mi"


def test_image_tag_defaults_to_the_app_version(chart: Any) -> None:
    """An empty image.tag means the chart's appVersion."""
    box = one(render_objects(chart, {}), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert box["image"].endswith(f":{app_version}")


def test_token_value_becomes_a_secret_mounted_as_a_file(chart: Any) -> None:
    """token.value creates a Secret; the Deployment mounts it and never carries the token itself."""
    objects = render_objects(chart, {"token": {"value": "tok-value-123"}})
    secret = one(objects, "Secret")
    assert base64.b64decode(secret["data"]["token"]).decode() == "tok-value-123"
    deployment = one(objects, "Deployment")
    volume = mounts(deployment)["/var/run/secrets/canfar"]["volume"]["secret"]
    assert volume["secretName"] == secret["metadata"]["name"]
    assert volume["items"] == [{"key": "token", "path": "token"}]
    assert "tok-value-123" not in yaml.safe_dump(deployment)


def test_existing_secret_is_referenced_not_created(chart: Any) -> None:
    """token.existingSecret/existingSecretKey are mounted as given and no Secret is rendered."""
    objects = render_objects(chart, {"token": {"existingSecret": "my-token", "existingSecretKey": "bearer"}})
    assert "Secret" not in kinds(objects)
    volume = mounts(one(objects, "Deployment"))["/var/run/secrets/canfar"]["volume"]["secret"]
    assert (volume["secretName"], volume["items"]) == ("my-token", [{"key": "bearer", "path": "token"}])


def test_inline_sessionsets_become_the_state_configmap(chart: Any, tmp_path: Path) -> None:
    """Each sessionSets entry is a file of the mounted ConfigMap that the controller reads as that set."""
    objects = render_objects(chart, {"sessionSets": EXAMPLE_SETS})
    configmap = one(objects, "ConfigMap")
    volume = mounts(one(objects, "Deployment"))["/etc/canfar-controller/sessionsets"]["volume"]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert sorted(configmap["data"]) == sorted(f"{name}.yaml" for name in EXAMPLE_SETS)
    for key, text in configmap["data"].items():
        (tmp_path / key).write_text(text)
        rendered, errors, _ = parse_file(tmp_path / key, prefix="cc")
        expected, _, _ = parse_file(generated.EXAMPLES / key, prefix="cc")
        assert errors == []
        assert rendered == expected


def test_no_sessionsets_gives_an_empty_state_directory(chart: Any) -> None:
    """With no sets the ConfigMap still exists (the mount needs it) and holds no files."""
    assert one(render_objects(chart, {}), "ConfigMap").get("data") in ({}, None)


def test_existing_sessionsets_configmap_is_mounted_instead(chart: Any) -> None:
    """existingSessionSetsConfigMap: the chart creates no ConfigMap and mounts the named one."""
    objects = render_objects(chart, {"existingSessionSetsConfigMap": "my-sets"})
    assert "ConfigMap" not in kinds(objects)
    volume = mounts(one(objects, "Deployment"))["/etc/canfar-controller/sessionsets"]["volume"]
    assert volume["configMap"]["name"] == "my-sets"


def test_chart_monitoring_files_are_links_to_the_manifests() -> None:
    """The chart's alert rules and dashboard are symlinks into manifests/, so they cannot drift."""
    for name, target in {
        "alerts.yaml": generated.ALERTS,
        "canfar-controller.json": generated.DASHBOARD,
    }.items():
        link = CHART / "files" / name
        assert link.is_symlink(), f"{link} must be a symlink to {target}, not a copy"
        assert not os.path.isabs(os.readlink(link)), "a relative link survives a checkout elsewhere"
        assert link.resolve() == target.resolve()


def test_rendered_prometheus_rule_is_the_alerts_file(chart: Any) -> None:
    """The PrometheusRule's spec parses to exactly manifests/prometheus/alerts.yaml."""
    rule = one(render_objects(chart, EVERYTHING_ON), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(generated.ALERTS.read_text())


def test_rendered_dashboard_is_the_dashboard_file(chart: Any) -> None:
    """The sidecar ConfigMap carries manifests/grafana/canfar-controller.json byte for byte."""
    objects = render_objects(chart, EVERYTHING_ON)
    dashboard = next(
        o for o in objects if o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"]["labels"]
    )
    assert dashboard["data"] == {"canfar-controller.json": generated.DASHBOARD.read_text()}
    json.loads(dashboard["data"]["canfar-controller.json"])


def test_service_monitor_scrapes_under_the_job_the_alerts_query(chart: Any) -> None:
    """The rendered ServiceMonitor yields job="canfar-controller", which the alert rules filter on."""
    objects = render_objects(chart, EVERYTHING_ON)
    check_monitoring(
        one(objects, "Service"), one(objects, "ServiceMonitor"), one(objects, "PrometheusRule")["spec"]
    )


def test_default_values_satisfy_the_schema(chart: Any) -> None:
    """values.yaml itself is valid under values.schema.json."""
    chart.validate_schema(chart.merge_values({}))


def test_example_sessionsets_satisfy_the_schema(chart: Any) -> None:
    """Every shipped example SessionSet is accepted inline."""
    chart.validate_schema(chart.merge_values({"sessionSets": EXAMPLE_SETS}))


WORKERS = EXAMPLE_SETS["workers"]
BAD_VALUES = {
    "unknown-top-level-key": {"replicaCount": 2},
    "negative-replicas": {"sessionSets": {"w": {**WORKERS, "replicas": -1}}},
    "replicas-as-string": {"sessionSets": {"w": {**WORKERS, "replicas": "3"}}},
    "missing-template": {"sessionSets": {"w": {"replicas": 1}}},
    "unknown-kind": {"sessionSets": {"w": {**WORKERS, "template": {**WORKERS["template"], "kind": "vm"}}}},
    "too-many-cores": {"sessionSets": {"w": {**WORKERS, "template": {**WORKERS["template"], "cores": 1000}}}},
    "typo-in-spec": {"sessionSets": {"w": {**WORKERS, "replica": 3}}},
    "uppercase-set-name": {"sessionSets": {"Workers": WORKERS}},
    "bad-restart-policy": {"sessionSets": {"w": {**WORKERS, "restartPolicy": "Sometimes"}}},
    "uppercase-prefix": {"controller": {"prefix": "CC"}},
    "zero-interval": {"controller": {"interval": 0}},
    "zero-concurrency": {"controller": {"concurrency": 0}},
    "too-much-concurrency": {"controller": {"concurrency": 129}},
    "port-out-of-range": {"metrics": {"port": 70000}},
    "server-not-a-url": {"server": {"url": "ws-uv.canfar.net"}},
    "bad-pull-policy": {"image": {"pullPolicy": "Sometimes"}},
    "unknown-update-strategy": {"sessionSets": {"w": {**WORKERS, "updateStrategy": {"type": "BlueGreen"}}}},
    "surge-with-on-completion": {
        "sessionSets": {"w": {**WORKERS, "updateStrategy": {"type": "OnCompletion", "maxSurge": 1}}}
    },
    "unavailable-with-recreate": {
        "sessionSets": {"w": {**WORKERS, "updateStrategy": {"type": "Recreate", "maxUnavailable": "50%"}}}
    },
    "surge-and-unavailable-zero": {"sessionSets": {"w": {**WORKERS, "updateStrategy": {"maxSurge": 0}}}},
    "surge-and-unavailable-zero-percent": {
        "sessionSets": {"w": {**WORKERS, "updateStrategy": {"maxSurge": "0%", "maxUnavailable": 0}}}
    },
    "surge-over-100-percent": {"sessionSets": {"w": {**WORKERS, "updateStrategy": {"maxSurge": "150%"}}}},
    "surge-negative": {"sessionSets": {"w": {**WORKERS, "updateStrategy": {"maxSurge": -1}}}},
    "surge-without-percent-sign": {"sessionSets": {"w": {**WORKERS, "updateStrategy": {"maxSurge": "2"}}}},
    "unknown-update-field": {"sessionSets": {"w": {**WORKERS, "updateStrategy": {"partition": 1}}}},
    "renew-as-string": {"sessionSets": {"w": {**WORKERS, "renew": "yes"}}},
    "renew-fraction-over-one": {"controller": {"renewWhenRemaining": 1.5}},
    "zero-renew-fraction": {"controller": {"renewWhenRemaining": 0}},
    "zero-pending-limit": {"controller": {"pendingLimit": 0}},
    "zero-terminating-limit": {"controller": {"terminatingLimit": 0}},
    "negative-destructive-settle": {"controller": {"destructiveSettle": -1}},
    "negative-session-expiry": {"controller": {"sessionExpiry": -1}},
    "capacity-as-string": {"controller": {"capacity": "false"}},
    "replicas-and-autoscale": {"sessionSets": {"w": {**WORKERS, "autoscale": EXAMPLE_SETS["queue"]["autoscale"]}}},
    "autoscale-two-kinds-in-a-signal": {"sessionSets": {"w": {"template": WORKERS["template"], "autoscale": {
        "maxReplicas": 4, "target": 1, "signals": [{"file": "/q", "platform": {}}]}}}},
    "autoscale-bad-policy": {"sessionSets": {"w": {"template": WORKERS["template"], "autoscale": {
        "maxReplicas": 4, "target": 1, "signals": [{"file": "/q"}], "scaleDown": {"policy": "Kill"}}}}},
    "autoscale-zero-target": {"sessionSets": {"w": {"template": WORKERS["template"], "autoscale": {
        "maxReplicas": 4, "target": 0, "signals": [{"file": "/q"}]}}}},
    "bad-persistence-size": {"persistence": {"size": "lots"}},
    "unknown-persistence-key": {"persistence": {"accessMode": "ReadWriteMany"}},
}

#: SessionSet specs the controller accepts; the schema must accept them too.
GOOD_SETS = {
    "on-completion": {**WORKERS, "restartPolicy": "OnFailure", "updateStrategy": {"type": "OnCompletion"}},
    "recreate": {**WORKERS, "updateStrategy": {"type": "Recreate"}},
    "rolling-explicit": {**WORKERS, "updateStrategy": {"type": "RollingUpdate", "maxSurge": 2, "maxUnavailable": "25%"}},
    "unavailable-only": {**WORKERS, "updateStrategy": {"maxSurge": 0, "maxUnavailable": 1}},
    "surge-100-percent": {**WORKERS, "updateStrategy": {"maxSurge": "100%"}},
    "no-renew": {**WORKERS, "renew": False, "suspend": True, "restartPolicy": "Never"},
    "autoscale-every-signal": {"template": WORKERS["template"], "autoscale": {
        "minReplicas": 1, "maxReplicas": 40, "target": 5, "activation": 1,
        "signals": [{"file": "/var/lib/queue/depth"},
                    {"http": {"url": "https://queue.example.org/stats", "field": "queue.pending",
                              "tokenFile": "/run/secrets/q"}},
                    {"prometheus": {"url": "http://prometheus:9090", "query": 'sum(pending_jobs{queue="lsst"})'}},
                    {"platform": {"reserveCores": 32, "reserveRAM": 128}}],
        "scaleUp": {"stabilizationSeconds": 0, "maxStep": 10},
        "scaleDown": {"stabilizationSeconds": 300, "policy": "Destroy", "maxStep": 5},
        "onSignalFailure": 2}},
}


@pytest.mark.parametrize("name", sorted(GOOD_SETS))
def test_schema_accepts_what_the_controller_accepts(chart: Any, name: str) -> None:
    """Every field of the SessionSet reference is allowed inline, with the values the controller allows."""
    document = {"apiVersion": API_VERSION, "kind": "SessionSet", "metadata": {"name": name}, "spec": GOOD_SETS[name]}
    SessionSet.model_validate(document)
    chart.validate_schema(chart.merge_values({"sessionSets": {name: GOOD_SETS[name]}}))


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_schema_rejects_bad_values(helm: Any, chart: Any, name: str) -> None:
    """values.schema.json refuses values that would render a broken or surprising release."""
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(chart.merge_values(BAD_VALUES[name]))


def test_render_refuses_values_the_schema_rejects(helm: Any, chart: Any) -> None:
    """An install checks the schema before rendering anything."""
    with pytest.raises(helm.HelmValuesError):
        render(chart, BAD_VALUES["negative-replicas"])


@pytest.mark.parametrize("name", sorted(n for n in BAD_VALUES if "sessionSets" in BAD_VALUES[n]))
def test_controller_rejects_what_the_schema_rejects(name: str) -> None:
    """The schema mirrors the controller's validation: a set it refuses, the controller refuses too."""
    ((set_name, spec),) = BAD_VALUES[name]["sessionSets"].items()
    document = {"apiVersion": API_VERSION, "kind": "SessionSet", "metadata": {"name": set_name}, "spec": spec}
    with pytest.raises(ValidationError):
        SessionSet.model_validate(document)
