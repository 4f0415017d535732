"""A real HTTP file server on 127.0.0.1 whose downloads can be cut off, as a flaky network or
an overloaded origin does: it announces the whole ``Content-Length`` and closes the connection
after part of the bytes. Serves ``HEAD``, ``GET`` and single ``Range`` requests (GDAL's
``/vsicurl/`` and fsspec read both ways).

It runs in its own process (:func:`file_server`): GDAL holds the GIL while it downloads, so a
server thread in the reading process would never answer. ``POST /_control?cut=F`` sets the
fraction of each body sent; ``GET /_stats`` answers the GET count per path and the cut bodies.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class FileServer:
    """Serves the files under ``root``. Attributes a test may change mid-way:

    - ``cut_fraction``: send only this fraction of each body, then close (1.0: whole bodies);
    - ``requests``: GET requests per path; ``cut``: how many bodies were cut short.
    """

    def __init__(self, root: Path, cut_fraction: float = 1.0) -> None:
        self.root = root.resolve()
        self.cut_fraction = cut_fraction
        self.requests: Counter[str] = Counter()
        self.cut = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _file(self) -> Path | None:
                path = (server.root / self.path.split("?")[0].lstrip("/")).resolve()
                if not path.is_file() or server.root not in path.parents:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                return path

            def do_HEAD(self) -> None:
                path = self._file()
                if path is None:
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(path.stat().st_size))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "image/tiff")
                self.end_headers()

            def do_POST(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                server.cut_fraction = float(query["cut"][0])
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                if self.path == "/_stats":
                    body = json.dumps({"requests": server.requests, "cut": server.cut}).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                path = self._file()
                if path is None:
                    return
                server.requests[self.path] += 1
                data = path.read_bytes()
                m = _RANGE.match(self.headers.get("Range", ""))
                if m:
                    start = int(m.group(1))
                    end = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
                    body = data[start : end + 1]
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                else:
                    body = data
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "image/tiff")
                self.end_headers()
                if server.cut_fraction < 1.0:
                    server.cut += 1
                    self.wfile.write(body[: int(len(body) * server.cut_fraction)])
                    self.wfile.flush()
                    self.close_connection = True  # the peer sees EOF before Content-Length
                    return
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class RemoteFiles:
    """A :class:`FileServer` in another process."""

    url: str

    def set_cut(self, fraction: float) -> None:
        httpx.post(f"{self.url}/_control", params={"cut": fraction}, timeout=10).raise_for_status()

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/_stats", timeout=10).json()


@contextlib.contextmanager
def file_server(root: Path, cut_fraction: float = 1.0) -> Iterator[RemoteFiles]:
    """``python -m rgb_assets_tests.servers.files ROOT CUT``, stopped on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rgb_assets_tests.servers.files", str(root), str(cut_fraction)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield RemoteFiles(proc.stdout.readline().strip())
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    with FileServer(Path(sys.argv[1]), float(sys.argv[2])) as served:
        print(served.url, flush=True)
        served.thread.join()
