"""A real HTTP proxy on 127.0.0.1 in front of the live STAC API that misbehaves on demand, as
public APIs do: 503/429 answers, an outage, stalled searches, dropped connections."""

from __future__ import annotations

import http.server
import threading
import time

import httpx


class StacApiProxy:
    """Forwards to ``upstream`` and rewrites the API's own URL in bodies, so that paging links
    come back through the proxy. Every setting is an attribute a test may change mid-way:

    - ``fail_every``: answer the 1st and then every n-th request with 503 or 429 (0: never);
    - ``down``: answer every request with 503 (an outage);
    - ``search_delay_s``: stall every ``/search`` request that long (a hung or slow server);
    - ``drop_searches``: close the connection without an answer on that many first searches.
    """

    def __init__(
        self,
        upstream: str,
        fail_every: int = 0,
        *,
        search_delay_s: float = 0.0,
        drop_searches: int = 0,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.fail_every = fail_every
        self.down = False
        self.search_delay_s = search_delay_s
        self.drop_searches = drop_searches
        self.requests = 0
        self.failures: list[int] = []
        self.searches = 0
        self.dropped = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, code: int) -> None:
                self.send_response(code)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _handle(self) -> None:
                proxy.requests += 1
                n = proxy.requests
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.path.startswith("/search"):
                    proxy.searches += 1
                    if proxy.dropped < proxy.drop_searches:
                        proxy.dropped += 1
                        self.close_connection = True  # no status line: the peer sees EOF
                        return
                    time.sleep(proxy.search_delay_s)
                if proxy.down:
                    self._answer(503)
                    return
                if proxy.fail_every and (n - 1) % proxy.fail_every == 0:  # 1st, every n-th
                    code = 429 if len(proxy.failures) % 2 else 503
                    proxy.failures.append(code)
                    self._answer(code)
                    return
                body = body.replace(proxy.url.encode(), proxy.upstream.encode()) if body else None
                r = httpx.request(
                    self.command,
                    proxy.upstream + self.path,
                    content=body,
                    headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
                    timeout=30,
                )
                out = r.content.replace(proxy.upstream.encode(), proxy.url.encode())
                self.send_response(r.status_code)
                self.send_header("Content-Type", r.headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = _handle
            do_POST = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StacApiProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
