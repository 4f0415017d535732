"""A real HTTP proxy on 127.0.0.1 in front of a Dagster webserver's GraphQL API that loses
answers: it forwards each launch (so Dagster creates the run) and then holds the answer past the
client's timeout, as an overloaded webserver or a flaky network does."""

from __future__ import annotations

import http.server
import threading
import time

import httpx


class GraphQLProxy:
    """Forwards to ``upstream``; ``launch_delay_s`` holds every ``hold_every``-th launch answer.

    ``launches`` counts launch mutations forwarded (each one created a run upstream).
    """

    def __init__(self, upstream: str, launch_delay_s: float = 0.0, hold_every: int = 1) -> None:
        self.upstream = upstream
        self.launch_delay_s = launch_delay_s
        self.hold_every = hold_every
        self.launches = 0
        self.held = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hold = False
                if b"launchPipelineExecution" in body or b"launchRun" in body:
                    with proxy._lock:
                        proxy.launches += 1
                        hold = bool(proxy.launch_delay_s) and proxy.launches % proxy.hold_every == 0
                        proxy.held += hold
                r = httpx.post(
                    proxy.upstream,
                    content=body,
                    headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
                    timeout=60,
                )
                if hold:  # the run exists upstream; its answer arrives too late
                    time.sleep(proxy.launch_delay_s)
                try:
                    self.send_response(r.status_code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(r.content)))
                    self.end_headers()
                    self.wfile.write(r.content)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting: exactly the fault this proxy injects

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/graphql"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> GraphQLProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
