"""The code location's gRPC server, starting runs from a warm fork server.

Dagster's code server (``dagster api grpc``) starts every run in a *spawned* process, which
imports Python, Dagster and the code location again before the first step: about 4 s of CPU
and wall time per run here, longer than a demo-size partition's whole execution (2.6 s).
This server is Dagster's own (``DagsterApiServer`` subclassed, nothing copied); only the start
method of run processes changes: a ``forkserver`` that imported the code location, Dagster's
run-worker modules and the instance's storage once forks each run process.

What stays as Dagster does it: the run process is still a child process of the code server
(not a thread), gets the same arguments, reports its events through the same queue, is
watched and terminated by the same code (``CancelExecution``, a dead run process fails its
run). The fork server starts with the code server, from its environment, and the server
listens only once it has imported everything, so the first run is warm too.

    rgb-assets code-server -h 127.0.0.1 -p 4000          # or: python -m rgb_assets.code_server

Dagster's webserver and daemon reach it through a ``grpc_server`` workspace entry
(``docker/workspace.yaml``, used by ``make dev`` and the Compose stack).

Upstream, Dagster could offer this as a code-server option (the start method of run processes
and the modules to preload, as its multiprocess executor already does for steps); until then
``WarmApiServer`` sets the one attribute that holds it, ``_mp_ctx``.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

#: Modules every run process needs, imported once by the fork server.
PRELOAD: tuple[str, ...] = (
    "dagster._grpc.impl",
    "dagster._core.execution.api",
    "dagster._core.storage.runs.sqlite.sqlite_run_storage",
    "dagster._core.storage.event_log.sqlite.sqlite_event_log",
    "dagster._core.storage.schedules.sqlite.sqlite_schedule_storage",
    "dagster_postgres",
    "distributed",
)

DEFAULT_MODULE = "rgb_assets.definitions"


def warm_context(modules: Sequence[str]) -> Any:
    """A ``forkserver`` multiprocessing context whose server has imported ``modules``.

    The fork server is a fresh interpreter started now (no thread of the gRPC server is ever
    forked); its children share the imported modules copy-on-write and import nothing again.
    A module that fails to import there is imported by the run process itself, as before.
    """
    from multiprocessing import forkserver

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([*PRELOAD, *modules])
    forkserver.ensure_running()
    return ctx


def await_preload(ctx: Any) -> None:
    """Return once the fork server has imported its modules: it forks a first child only
    after them, so starting one trivial process and joining it waits exactly that long."""
    probe = ctx.Process(target=os.getpid, name="rgb-assets-forkserver-ready")
    probe.start()
    probe.join()


def _server_class() -> type:
    from dagster._grpc.server import DagsterApiServer

    class WarmApiServer(DagsterApiServer):
        """Dagster's code server; run processes are forked from a warm fork server."""

        def __init__(self, *args: Any, preload: Sequence[str] = (), **kwargs: Any) -> None:
            # The fork server imports while this server loads its definitions; the port opens
            # (``serve``) only once both are done, so the first run is as warm as the next.
            ctx = warm_context(preload)
            super().__init__(*args, **kwargs)
            self._mp_ctx = ctx
            await_preload(ctx)

    return WarmApiServer


def serve(
    module_name: str = DEFAULT_MODULE,
    *,
    host: str = "127.0.0.1",
    port: int = 4000,
    location_name: str | None = "rgb_assets",
    max_workers: int | None = None,
) -> None:
    """Serve the code location ``module_name`` on ``host:port`` until interrupted."""
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.utils import FuturesAwareThreadPoolExecutor
    from dagster._grpc.server import DagsterGrpcServer
    from dagster._utils.interrupts import setup_interrupt_handlers

    # SIGINT and SIGTERM stop the server (a shell's background job starts with SIGINT ignored,
    # and Dagster maps SIGTERM to SIGINT's handler, as Kubernetes and `docker stop` send it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    setup_interrupt_handlers()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logger = logging.getLogger("rgb_assets.code_server")
    origin = LoadableTargetOrigin(
        executable_path=sys.executable, module_name=module_name, working_directory=os.getcwd()
    )
    stop = threading.Event()
    pool = FuturesAwareThreadPoolExecutor(max_workers=max_workers)
    servicer = _server_class()(
        server_termination_event=stop,
        logger=logger,
        server_threadpool_executor=pool,
        loadable_target_origin=origin,
        location_name=location_name,
        preload=[module_name],
    )
    server = DagsterGrpcServer(
        server_termination_event=stop,
        dagster_api_servicer=servicer,
        logger=logger,
        threadpool_executor=pool,
        host=host,
        port=port,
    )
    logger.info(
        "rgb-assets code server for %s on %s:%d (pid %d)", module_name, host, port, os.getpid()
    )
    try:
        server.serve()
    except KeyboardInterrupt:
        logger.info("code server interrupted")


def wait_ready(host: str, port: int, pid: int | None = None, timeout_s: float = 180.0) -> None:
    """Wait until a code server listens on ``host:port`` (it listens once its definitions
    loaded); raise when process ``pid`` exits first or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex((host, port)) == 0:
                return
        if pid is not None:
            try:
                os.kill(pid, 0)
            except OSError:
                raise RuntimeError(f"the code server (pid {pid}) exited before listening") from None
        if time.monotonic() > deadline:
            raise RuntimeError(f"no code server on {host}:{port} after {timeout_s:.0f} s")
        time.sleep(0.5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rgb-assets code-server", description=__doc__, add_help=False
    )
    parser.add_argument("-m", "--module-name", default=DEFAULT_MODULE)
    parser.add_argument("-h", "--host", default="127.0.0.1", help="bind address (127.0.0.1)")
    parser.add_argument("-p", "--port", type=int, default=4000)
    parser.add_argument("--location-name", default="rgb_assets")
    parser.add_argument("--max-workers", type=int, default=None)
    parser.add_argument("--help", action="help")
    parser.add_argument(
        "--wait", action="store_true", help="only wait until a code server listens, then exit"
    )
    parser.add_argument("--pid", type=int, default=None, help="with --wait: the server's pid")
    args = parser.parse_args(argv)
    if args.wait:
        try:
            wait_ready(args.host, args.port, args.pid)
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
    serve(
        args.module_name,
        host=args.host,
        port=args.port,
        location_name=args.location_name,
        max_workers=args.max_workers,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
