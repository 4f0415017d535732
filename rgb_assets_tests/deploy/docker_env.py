"""A Docker engine and a base image for the stack test, made on this machine.

Nothing can be pulled from Docker Hub here, so the Dockerfiles' ``BASE_IMAGE`` is a Debian
bookworm root filesystem made with ``debootstrap`` and ``docker import``ed once (kept in the
engine afterwards). The engine is started only when none answers, and then stopped again.
The packages come from ``.ci/install-system.sh`` (docker.io, docker-compose, debootstrap).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

DOCKER = "/usr/bin/docker"  # /usr/local/bin/docker in CI images can be a different client
DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"
COMPOSE = "/usr/bin/docker-compose"
DEBOOTSTRAP = "/usr/sbin/debootstrap"
SOCKET = Path("/var/run/docker.sock")
BASE_IMAGE = "local/debian:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
INSTALL_HINT = "run `.ci/install-system.sh` as root (docker.io docker-compose debootstrap)"
STARTUP_TIMEOUT_S = 60.0


def run(cmd: list[str], timeout: float = 600, **kwargs: object) -> subprocess.CompletedProcess:
    """Run a command, failing the test with its output when it fails."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited {result.returncode}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def check_tools() -> None:
    """Fail (never skip): a silently skipped stack test would hide a broken CI image."""
    missing = [t for t in (DOCKER, DOCKERD, COMPOSE, DEBOOTSTRAP) if not Path(t).is_file()]
    if missing:
        pytest.fail(f"missing {missing}; {INSTALL_HINT}")


def engine_answers() -> bool:
    if not SOCKET.exists():
        return False
    result = subprocess.run([DOCKER, "info"], capture_output=True, timeout=30)
    return result.returncode == 0


@contextlib.contextmanager
def docker_engine(workdir: Path) -> Iterator[None]:
    """A running Docker engine: the one already running, or ``dockerd`` started here and
    stopped (by its pid) on exit."""
    check_tools()
    if engine_answers():
        yield
        return
    if os.geteuid() != 0:
        pytest.fail("no Docker engine is running and starting dockerd needs root")
    log = workdir / "dockerd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [DOCKERD], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not engine_answers():
            if proc.poll() is not None:
                pytest.fail(f"dockerd exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"dockerd not ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # dockerd stops its containers, then exits
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


def image_exists(tag: str) -> bool:
    result = subprocess.run([DOCKER, "image", "inspect", tag], capture_output=True, timeout=60)
    return result.returncode == 0


def debian_mirror() -> str:
    """The mirror apt uses on this machine (debootstrap must reach the same one)."""
    if DEBIAN_SOURCES.is_file():
        match = re.search(r"^URIs:\s*(\S+/debian)\s*$", DEBIAN_SOURCES.read_text(), re.M)
        if match:
            return match.group(1)
    return DEBIAN_MIRROR


def ensure_base_image(tag: str = BASE_IMAGE) -> str:
    """Debian bookworm (minbase) as a local image, made once: about a minute cold."""
    if image_exists(tag):
        return tag
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run([DEBOOTSTRAP, "--variant=minbase", "bookworm", str(rootfs), debian_mirror()])
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            run([DOCKER, "import", "-", tag], stdin=tar.stdout)
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait(timeout=60)
    return tag
