"""Container healthchecks without curl or procps:

- ``healthcheck.py http URL``: the URL answers 2xx;
- ``healthcheck.py tcp HOST PORT``: the port accepts a connection;
- ``healthcheck.py dask-worker DASHBOARD_URL NAME``: a worker of that name is registered with
  the scheduler (its dashboard's worker table; /json/identity.json fails to encode while
  tasks run), i.e. the worker can take tasks;
- ``healthcheck.py dagster-daemon``: the daemons that queue runs, tick sensors and schedules
  and monitor runs sent a heartbeat to the instance's PostgreSQL in the last two minutes
  (what ``dagster-daemon liveness-check`` asks, without importing Dagster: on a busy machine
  that import alone outlasts a healthcheck timeout).

Each check imports only the standard library (and psycopg2 for the daemon), so it stays cheap.
"""

import re
import socket
import sys
import urllib.request

kind, *args = sys.argv[1:]
if kind == "http":
    with urllib.request.urlopen(args[0], timeout=5) as response:
        sys.exit(0 if 200 <= response.status < 300 else 1)
if kind == "dask-worker":
    with urllib.request.urlopen(f"{args[0]}/info/main/workers.html", timeout=5) as response:
        cells = re.findall(r"<td>\s*([^<]*?)\s*</td>", response.read().decode())
    sys.exit(0 if args[1] in cells else 1)
if kind == "dagster-daemon":
    import os

    import psycopg2

    required = {"SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR", "MONITORING"}
    with psycopg2.connect(
        host=os.environ["DAGSTER_PG_HOST"],
        port=os.environ["DAGSTER_PG_PORT"],
        user=os.environ["DAGSTER_PG_USER"],
        password=os.environ["DAGSTER_PG_PASSWORD"],
        dbname=os.environ["DAGSTER_PG_DB"],
        connect_timeout=5,
    ) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT daemon_type FROM daemon_heartbeats WHERE timestamp > "
            "(now() AT TIME ZONE 'utc') - interval '120 seconds'"
        )
        fresh = {row[0] for row in cur.fetchall()}
    sys.exit(0 if required <= fresh else 1)
with socket.create_connection((args[0], int(args[1])), timeout=5):
    sys.exit(0)
