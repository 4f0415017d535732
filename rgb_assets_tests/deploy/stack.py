"""The Compose stack (docker/compose.yaml) built and run on this machine for the stack test.

The images are built once per session with ``docker build`` from a debootstrapped Debian
base (docker_env.py), then the stack runs with ``docker/compose.test.yaml``: host networking,
every server on 127.0.0.1 and a free port, fresh secrets, its own project name and volumes.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rgb_assets_tests.deploy.docker_env import BASE_IMAGE, COMPOSE, DOCKER, run

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "docker"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
APP_IMAGE = "rgb-assets:stack-test"
POSTGRES_IMAGE = "rgb-assets-postgres:stack-test"
BUILD_TIMEOUT_S = 1800
UP_TIMEOUT_S = 600
PORT_NAMES = [
    "POSTGRES_PORT", "WEBSERVER_PORT", "CODE_SERVER_PORT", "DASK_SCHEDULER_PORT",
    "DASK_DASHBOARD_PORT", "S3_PORT", "STAC_API_PORT", "REST_PORT", "WEED_MASTER_PORT",
    "WEED_MASTER_GRPC_PORT", "WEED_VOLUME_PORT", "WEED_VOLUME_GRPC_PORT", "WEED_FILER_PORT",
    "WEED_FILER_GRPC_PORT", "WEED_S3_GRPC_PORT",
]  # fmt: skip
HOST_NAMES = [
    "POSTGRES_HOST", "CODE_SERVER_HOST", "WEBSERVER_HOST", "DASK_SCHEDULER_HOST", "S3_HOST",
    "STAC_API_HOST",
]  # fmt: skip


def free_ports(n: int) -> list[int]:
    """n distinct free ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    for _ in range(n):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
    ports = [int(s.getsockname()[1]) for s in socks]
    for sock in socks:
        sock.close()
    return ports


def build_images(base_image: str = BASE_IMAGE) -> dict[str, float]:
    """Build both images (Docker's layer cache makes a rebuild of unchanged layers take
    seconds). The host's CA bundle goes into the build context for the package downloads and
    is removed again; it is git-ignored and never part of an image layer that is kept."""
    timings: dict[str, float] = {}
    cert = DOCKER_DIR / "certs" / CA_BUNDLE.name
    shutil.copyfile(CA_BUNDLE, cert)
    try:
        for tag, dockerfile in ((APP_IMAGE, "Dockerfile"), (POSTGRES_IMAGE, "postgres.Dockerfile")):
            t0 = time.monotonic()
            run(
                [
                    DOCKER, "build", "--network", "host",
                    "-f", str(DOCKER_DIR / dockerfile),
                    "--build-arg", f"BASE_IMAGE={base_image}",
                    "-t", tag, str(REPO),
                ],
                timeout=BUILD_TIMEOUT_S,
            )  # fmt: skip
            timings[tag] = time.monotonic() - t0
    finally:
        cert.unlink(missing_ok=True)
    return timings


@dataclass
class Stack:
    """A running stack: its project name, environment (ports, secrets) and where it logs."""

    project: str
    env: dict[str, str]
    env_file: Path
    workdir: Path
    timings: dict[str, float] = field(default_factory=dict)

    def port(self, name: str) -> int:
        return int(self.env[name])

    def url(self, port_name: str) -> str:
        return f"http://127.0.0.1:{self.port(port_name)}"

    def compose(self, *args: str, timeout: float = UP_TIMEOUT_S, check: bool = True):  # type: ignore[no-untyped-def]
        """docker-compose on the merged test configuration (see :func:`host_network_config`)."""
        cmd = [COMPOSE, "-p", self.project, "-f", str(self.workdir / "stack.yaml"), *args]
        if check:
            return run(cmd, timeout=timeout, env=compose_env(self.workdir))
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=compose_env(self.workdir)
        )

    def logs(self, tail: int = 60) -> str:
        result = self.compose("logs", "--no-color", f"--tail={tail}", check=False, timeout=120)
        return result.stdout[-20000:]

    def containers(self) -> dict[str, dict]:
        """service name -> docker inspect of its container."""
        ids = self.compose("ps", "-a", "-q", timeout=120).stdout.split()
        if not ids:
            return {}
        data = json.loads(run([DOCKER, "inspect", *ids], timeout=120).stdout)
        return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in data}


def stack_env(project: str, sample_dir: Path) -> dict[str, str]:
    """Every setting compose.yaml reads: localhost addresses, free ports, fresh secrets."""
    env = dict(zip(PORT_NAMES, map(str, free_ports(len(PORT_NAMES))), strict=True))
    env.update({name: "127.0.0.1" for name in HOST_NAMES})
    env.update(
        {
            "STACK_BIND": "127.0.0.1",
            "PUBLISH_BIND": "127.0.0.1",
            "BASE_IMAGE": BASE_IMAGE,
            "RGB_ASSETS_IMAGE": APP_IMAGE,
            "RGB_ASSETS_POSTGRES_IMAGE": POSTGRES_IMAGE,
            "POSTGRES_PASSWORD": secrets.token_hex(16),
            "AWS_ACCESS_KEY_ID": f"{project}-key",
            "AWS_SECRET_ACCESS_KEY": secrets.token_hex(20),
            "RGB_ASSETS_BUCKET": "rgb-assets",
            "RGB_ASSETS_COLLECTION": "sentinel-2-l2a",
            "RGB_ASSETS_FIRST_MONTH": "2015-01",
            "DAGSTER_MAX_CONCURRENT_RUNS": "2",
            "DASK_WORKER_MEMORY": "2GiB",
            "DASK_WORKER_THREADS": "1",
            "RGB_ASSETS_SAMPLE_DIR": str(sample_dir.resolve()),
        }
    )
    env["RGB_ASSETS_STAC_URL"] = f"http://127.0.0.1:{env['STAC_API_PORT']}"
    return env


# Services that must be healthy (all but the one-shot stack-init, which must exit 0).
SERVERS = [
    "postgres", "seaweedfs", "stac-api", "dask-scheduler", "dask-worker-1", "dask-worker-2",
    "user-code", "dagster-webserver", "dagster-daemon", "request-api",
]  # fmt: skip


def wait_healthy(stack: Stack, timeout_s: float = UP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        containers = stack.containers()
        init = containers.get("stack-init", {}).get("State", {})
        if init.get("Status") == "exited" and init.get("ExitCode") != 0:
            pytest.fail(f"stack-init failed:\n{stack.logs()}")
        states = {
            name: containers.get(name, {}).get("State", {}).get("Health", {}).get("Status", "?")
            for name in SERVERS
        }
        dead = [n for n in SERVERS if containers.get(n, {}).get("State", {}).get("Restarting")]
        if dead:
            pytest.fail(f"restarting: {dead}\n{stack.logs()}")
        if init.get("ExitCode") == 0 and all(s == "healthy" for s in states.values()):
            return
        time.sleep(3)
    pytest.fail(f"stack not healthy after {timeout_s:.0f} s: {states}\n{stack.logs()}")


def compose_env(workdir: Path) -> dict[str, str]:
    """A clean environment: compose lets the shell's variables override the env file."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        # docker-py's 60 s default is too short for stopping a busy container on 2 cores.
        "COMPOSE_HTTP_TIMEOUT": "600",
    }


def host_network_config(env_file: Path, workdir: Path) -> Path:
    """compose.yaml + compose.test.yaml merged by ``docker-compose config``, without ``ports``.

    The Docker API rejects published ports on host networking, and an override file cannot
    remove a list compose.yaml sets; on host networking they mean nothing anyway (each server
    listens on 127.0.0.1 at the port the env file gives it).
    """
    import yaml

    merged = run(
        [
            COMPOSE, "--env-file", str(env_file),
            "-f", str(DOCKER_DIR / "compose.yaml"), "-f", str(DOCKER_DIR / "compose.test.yaml"),
            "config",
        ],
        timeout=120, env=compose_env(workdir),
    ).stdout  # fmt: skip
    config = yaml.safe_load(merged)
    for name, service in config["services"].items():
        assert service.get("network_mode") == "host", f"{name} is not on host networking"
        service.pop("ports", None)
    path = workdir / "stack.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)  # holds the generated secrets
    return path


@contextlib.contextmanager
def compose_stack(workdir: Path, sample_dir: Path) -> Iterator[Stack]:
    """``docker-compose up`` the stack; ``down -v`` (containers and volumes) on exit."""
    project = f"rgbtest{os.getpid()}"
    env = stack_env(project, sample_dir)
    env_file = workdir / "stack.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in sorted(env.items())))
    env_file.chmod(0o600)
    host_network_config(env_file, workdir)
    stack = Stack(project, env, env_file, workdir)
    try:
        t0 = time.monotonic()
        stack.compose("up", "-d", "--no-build")
        wait_healthy(stack)
        stack.timings["up"] = time.monotonic() - t0
        yield stack
    finally:
        (workdir / "stack.log").write_text(stack.logs(tail=400))
        stack.compose("down", "-v", "--remove-orphans", "--timeout", "30", check=False)
        remove_project(project)


def remove_project(project: str) -> None:
    """Whatever ``down`` left behind (it can give up on a busy engine): the project's
    containers and volumes, found by compose's label. Fails the test if any remain."""
    label = f"label=com.docker.compose.project={project}"
    for kind, listing, removal in (
        ("containers", ["ps", "-aq"], ["rm", "-f"]),
        ("volumes", ["volume", "ls", "-q"], ["volume", "rm", "-f"]),
    ):
        ids = run([DOCKER, *listing, "--filter", label], timeout=300).stdout.split()
        if ids:
            run([DOCKER, *removal, *ids], timeout=600)
            print(f"removed {len(ids)} {kind} that docker-compose down left")
