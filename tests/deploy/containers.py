"""Building and running the shipped Dockerfile with Debian's buildah/podman, without a Docker engine.

No registry can be reached, so ``python:3.11-slim`` is replaced by a local stand-in: a debootstrap'ed
Debian bookworm with python3 and venv, plus this machine's CA bundle (PyPI is reached through a TLS proxy
whose CA is only in the host bundle). The Dockerfile is built unchanged except for ``--build-arg
BASE_IMAGE=<stand-in>``. The image store (base images and build layers) is cached outside the repo
under ``$CANFAR_CONTROLLER_CI_CACHE`` (default ``/var/tmp/canfar-controller-ci``), so only the first run
pays for debootstrap. To start over: ``umount $CACHE/storage/root/overlay; rm -rf $CACHE`` (the
overlay driver keeps its directory mounted).

Podman quirks on these machines (see tooling.md): builds need ``--isolation chroot``; runs need ``runc``
and explicit ulimits, because crun cannot handle the hybrid cgroups and CAP_SYS_RESOURCE is missing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

CACHE = Path(os.environ.get("CANFAR_CONTROLLER_CI_CACHE", "/var/tmp/canfar-controller-ci"))
STORE = CACHE / "storage"
STANDIN = "localhost/canfar-controller-ci/python-standin:3.11"
DEBIAN_BASE = "localhost/canfar-controller-ci/debian-python3:bookworm"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
RUN_FLAGS = ("--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096")


def storage_flags() -> list[str]:
    """Global flags that keep the image store in the cache, away from /var/lib/containers."""
    return ["--root", str(STORE / "root"), "--runroot", str(STORE / "run")]


def run(cmd: Sequence[str], *, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``, failing with its output (not just its exit code) when it fails."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} -> rc {proc.returncode}\n"
            f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
        )
    return proc


def podman(podman_bin: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Podman on the cached image store."""
    return run([podman_bin, *storage_flags(), *args], timeout=timeout)


def image_exists(podman_bin: str, ref: str) -> bool:
    probe = [podman_bin, *storage_flags(), "image", "exists", ref]
    return subprocess.run(probe, capture_output=True, timeout=120).returncode == 0


def free_port() -> int:
    """A loopback TCP port that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def debian_mirror(sources: Sequence[Path] | None = None) -> str:
    """The Debian archive this machine's apt is configured with (deb822 ``URIs:`` or one-line ``deb``)."""
    if sources is None:
        sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        if not source.is_file():
            continue
        text = source.read_text(errors="replace")
        for match in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, re.MULTILINE):
            uri = match.group(1).rstrip("/")
            if uri.endswith("/debian"):
                return uri
    raise AssertionError("no Debian archive found in /etc/apt/sources.list*")


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    """Serialise base-image builds between concurrent test runs sharing the cache."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ensure_standin_base(*, podman_bin: str, buildah_bin: str, debootstrap_bin: str) -> str:
    """Build (once) the stand-in for ``python:3.11-slim`` and return its reference."""
    with cache_lock():
        if image_exists(podman_bin, STANDIN):
            return STANDIN
        if not image_exists(podman_bin, DEBIAN_BASE):
            with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
                rootfs, tarball = Path(tmp) / "rootfs", Path(tmp) / "rootfs.tar"
                packages = "--include=python3,python3-venv,ca-certificates"
                bootstrap = [
                    debootstrap_bin,
                    "--variant=minbase",
                    packages,
                    "bookworm",
                    str(rootfs),
                    debian_mirror(),
                ]
                run(bootstrap, timeout=1800)
                run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."])
                podman(podman_bin, "import", str(tarball), DEBIAN_BASE)
        with tempfile.TemporaryDirectory(dir=CACHE) as context:
            (Path(context) / "ca-certificates.crt").write_bytes(HOST_CA_BUNDLE.read_bytes())
            (Path(context) / "Containerfile").write_text(
                f"FROM {DEBIAN_BASE}\nCOPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\n"
            )
            build(buildah_bin, Path(context), STANDIN, file=Path(context) / "Containerfile")
        return STANDIN


def build(
    buildah_bin: str, context: Path, tag: str, *, file: Path, build_args: dict[str, str] | None = None
) -> None:
    args = [f"--build-arg={key}={value}" for key, value in (build_args or {}).items()]
    run(
        [
            buildah_bin,
            *storage_flags(),
            "build",
            "--isolation",
            "chroot",
            "--pull=never",
            "--layers",
            "-f",
            str(file),
            "-t",
            tag,
            *args,
            str(context),
        ],
        timeout=1800,
    )
