"""Inside a loopback-only network namespace: start a Ray head, run one partition on the Ray
executor, list what ran on Ray, stop the head (only the one started here).

    unshare -n sh -c 'ip link set lo up; exec python -m rgb_assets_tests.ray_partition AOI YYYY-MM'

Ray binds the machine's non-loopback address whatever it is told; in a namespace with only
loopback everything stays on 127.0.0.1. Prints {"run_id", "success", "tasks", "head_log"}.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

DASHBOARD_PORT = 8265


def _wait_for_dashboard(proc: subprocess.Popen, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{DASHBOARD_PORT}/api/version"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("ray head exited")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError("the Ray dashboard did not answer")


def _stop_leftovers(home: Path) -> None:
    """Ray daemons that left the head's process group: ours carry this run's unique HOME."""
    import psutil

    mine = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("HOME") == str(home) and proc.pid != os.getpid():
                mine.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    for proc in mine:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(mine, timeout=10)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def _wait_for_job_agent(head: subprocess.Popen, timeout_s: float = 300.0) -> None:
    """The dashboard answers before the node's job agent does: submit a no-op job until it
    runs (the run's steps are Ray jobs)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(f"http://127.0.0.1:{DASHBOARD_PORT}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError("ray head exited")
        try:
            job = client.submit_job(entrypoint="true")
        except RuntimeError:
            time.sleep(2)
            continue
        while client.get_job_status(job) not in {
            JobStatus.SUCCEEDED,
            JobStatus.FAILED,
            JobStatus.STOPPED,
        }:
            time.sleep(1)
        if client.get_job_status(job) == JobStatus.SUCCEEDED:
            return
    raise TimeoutError("the Ray job agent did not start")


def _start_head(ray: str, env: dict, log: Path, home: Path, attempts: int = 3) -> subprocess.Popen:
    """Start the head and wait until it runs jobs; on a busy machine the raylet can abort while
    its agents import (15 s limit), so a failed start is cleaned up and retried."""
    for attempt in range(1, attempts + 1):
        with open(log, "wb") as out:
            head = subprocess.Popen(
                [
                    ray,
                    "start",
                    "--head",
                    "--block",
                    "--node-ip-address",
                    "127.0.0.1",
                    "--port",
                    "6380",
                    "--dashboard-host",
                    "127.0.0.1",
                    "--dashboard-port",
                    str(DASHBOARD_PORT),
                    "--num-cpus",
                    "2",
                    "--include-dashboard",
                    "true",
                    "--disable-usage-stats",
                    # Fixed agent ports (the namespace is private to this run).
                    "--metrics-export-port",
                    "52360",
                    "--dashboard-agent-listen-port",
                    "52365",
                    "--dashboard-agent-grpc-port",
                    "52366",
                    "--runtime-env-agent-port",
                    "52367",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            _wait_for_dashboard(head)
            _wait_for_job_agent(head)
            return head
        except (RuntimeError, TimeoutError):
            _stop_head(head, home)
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def _stop_head(head: subprocess.Popen, home: Path) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()
    _stop_leftovers(home)


def main(aoi: str, month: str) -> dict:
    home = Path(tempfile.mkdtemp(prefix="rgb-ray-home-"))
    env = dict(
        os.environ,
        HOME=str(home),
        RAY_USAGE_STATS_ENABLED="0",
        # Steps run as `dagster api execute_step` jobs: the project's environment on PATH, as
        # in a Ray cluster's image.
        PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        RAY_raylet_start_wait_time_s="600",
        RAY_agent_register_timeout_ms="600000",
    )
    ray = str(Path(sys.executable).with_name("ray"))
    log = home / "head.log"
    head = _start_head(ray, env, log, home)
    try:
        os.environ.update(
            HOME=str(home),
            RGB_ASSETS_EXECUTOR="ray",
            RAY_ADDRESS=f"http://127.0.0.1:{DASHBOARD_PORT}",
        )
        from rgb_assets_tests.run_partition import run_partition

        report = run_partition(aoi, month)
        listed = subprocess.run(
            [
                ray,
                "list",
                "tasks",
                "--address",
                f"http://127.0.0.1:{DASHBOARD_PORT}",
                "--format",
                "json",
                "--limit",
                "10000",
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        jobs = subprocess.run(
            [ray, "job", "list", "--address", f"http://127.0.0.1:{DASHBOARD_PORT}"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        text = listed.stdout
        tasks = json.loads(text[text.index("[") :]) if "[" in text else []
        report["tasks"] = len(tasks)
        report["task_names"] = sorted({t.get("name", "") for t in tasks})[:20]
        report["step_jobs"] = jobs.stdout.count("dagster-step-")
        return report
    finally:
        _stop_head(head, home)
        report_log = log.read_text(errors="replace")[-2000:]
        print(report_log, file=sys.stderr)


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
