"""Container healthchecks without curl or procps:

- ``healthcheck.py http URL``: the URL answers 2xx;
- ``healthcheck.py tcp HOST PORT``: the port accepts a connection;
- ``healthcheck.py dask-worker DASHBOARD_URL NAME``: a worker of that name is registered with
  the scheduler (its dashboard's identity JSON), i.e. the worker can take tasks.
"""

import json
import socket
import sys
import urllib.request

kind, *args = sys.argv[1:]
if kind == "http":
    with urllib.request.urlopen(args[0], timeout=5) as response:
        sys.exit(0 if 200 <= response.status < 300 else 1)
if kind == "dask-worker":
    with urllib.request.urlopen(f"{args[0]}/json/identity.json", timeout=5) as response:
        workers = json.load(response)["workers"].values()
    sys.exit(0 if any(w.get("name") == args[1] for w in workers) else 1)
with socket.create_connection((args[0], int(args[1])), timeout=5):
    sys.exit(0)
