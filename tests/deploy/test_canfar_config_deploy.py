"""Deploying with a canfar login instead of a token: the kustomize overlay and the Helm values."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from controller.cli import build_parser
from tests.deploy import generated
from tests.deploy.kube import STATUS_DIR, Obj, arg, container, load_objects, mounts, one, validate_strict
from tests.deploy.test_helm import chart, helm, render, render_objects  # noqa: F401  (fixtures)
from tests.tools import require_tool

OVERLAY = generated.MANIFESTS / "overlays" / "canfar-config"
LOGIN_DIR = "/var/run/secrets/canfar"


def kustomize(directory: Path) -> str:
    proc = subprocess.run([require_tool("kubectl"), "kustomize", str(directory)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def check_login_deployment(deployment: Obj, secret: str, key: str) -> None:
    """--canfar-config names the mounted Secret's file, no token is used, and the flags parse."""
    box = container(deployment)
    assert arg(deployment, "--canfar-config") == f"{LOGIN_DIR}/config.yaml"
    assert arg(deployment, "--token-file") is None
    volume = mounts(deployment)[LOGIN_DIR]
    assert volume["readOnly"] is True
    assert volume["volume"]["secret"]["secretName"] == secret
    assert volume["volume"]["secret"]["items"] == [{"key": key, "path": "config.yaml"}]
    assert not volume["volume"]["secret"]["defaultMode"] & 0o222, "read-only: rotated tokens go to the status dir"
    assert STATUS_DIR in mounts(deployment) and not mounts(deployment)[STATUS_DIR].get("readOnly", False)
    parsed = build_parser().parse_args(box["args"])
    assert parsed.canfar_config == Path(f"{LOGIN_DIR}/config.yaml")


def test_the_overlay_swaps_the_token_for_the_login_and_keeps_every_other_flag(tmp_path: Path) -> None:
    rendered = kustomize(OVERLAY)
    (tmp_path / "overlay.yaml").write_text(rendered)
    validate_strict([tmp_path / "overlay.yaml"])
    deployment = one(load_objects([rendered]), "Deployment")
    check_login_deployment(deployment, "canfar-controller-login", "config.yaml")
    base = one(load_objects([kustomize(generated.KUBERNETES)]), "Deployment")
    expected = [a for a in container(base)["args"] if not a.startswith(("--server=", "--token-file="))]
    assert [a for a in container(deployment)["args"] if not a.startswith("--canfar-config=")] == expected
    assert arg(deployment, "--server") is None  # the config's active server


def test_the_base_kustomization_lists_every_core_manifest() -> None:
    listed = kustomize(generated.KUBERNETES)
    core = load_objects(path.read_text() for path in sorted(generated.KUBERNETES.glob("*.yaml"))
                        if path.name != "kustomization.yaml")
    assert sorted(o["kind"] for o in load_objects([listed])) == sorted(o["kind"] for o in core)


@pytest.mark.parametrize(("values", "secret", "key"), [
    ({"canfarConfig": {"existingSecret": "my-login"}}, "my-login", "config.yaml"),
    ({"canfarConfig": {"existingSecret": "my-login", "existingSecretKey": "canfar.yaml"}}, "my-login", "canfar.yaml"),
    ({"canfarConfig": {"value": "version: 2\n"}}, "rel-canfar-controller-canfar-config", "config.yaml"),
])
def test_helm_mounts_a_canfar_config_instead_of_the_token(
        chart: Any, values: dict[str, Any], secret: str, key: str, tmp_path: Path) -> None:  # noqa: F811
    rendered = render(chart, {**values, "server": {"url": ""}})
    objects = load_objects(rendered.values())
    for name, text in rendered.items():
        (tmp_path / Path(name).name).write_text(text)
    validate_strict(sorted(tmp_path.iterdir()))
    deployment = one(objects, "Deployment")
    check_login_deployment(deployment, secret, key)
    assert arg(deployment, "--server") is None
    secrets = [o for o in objects if o["kind"] == "Secret"]
    assert [s["metadata"]["name"] for s in secrets] == ([secret] if "value" in values["canfarConfig"] else [])


def test_helm_keeps_an_explicit_server_with_a_canfar_config(chart: Any) -> None:  # noqa: F811
    deployment = one(render_objects(chart, {"canfarConfig": {"existingSecret": "my-login"}}), "Deployment")
    assert arg(deployment, "--server") == "https://ws-uv.canfar.net/skaha/v1"


def test_helm_refuses_a_token_without_a_server(chart: Any) -> None:  # noqa: F811
    with pytest.raises(Exception, match=r"server\.url is required with a token"):
        render(chart, {"server": {"url": ""}})
