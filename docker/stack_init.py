"""One-shot set-up of the stack's state, run before the servers start (the `stack-init`
service); idempotent, so it runs on every `docker-compose up`.

- the Dagster and pgstac databases on the PostgreSQL server;
- Dagster's tables (`dagster instance migrate`), created once here rather than raced by the
  webserver, daemon and code server starting together;
- the pgstac schema, numeric queryables for `eo:cloud_cover` and `numberMatched`;
- the bucket of ``RGB_ASSETS_STORAGE_ROOT`` on the S3-compatible store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from urllib.parse import urlparse

import psycopg
from psycopg import sql

QUERYABLES = {
    "$schema": "https://json-schema.org/draft/2019-09/schema",
    "type": "object",
    "properties": {
        "eo:cloud_cover": {"type": "number", "minimum": 0, "maximum": 100},
    },
}


def _conninfo(dbname: str) -> str:
    return psycopg.conninfo.make_conninfo(
        host=os.environ["DAGSTER_PG_HOST"],
        port=os.environ["DAGSTER_PG_PORT"],
        user=os.environ["DAGSTER_PG_USER"],
        password=os.environ["DAGSTER_PG_PASSWORD"],
        dbname=dbname,
    )


def create_databases(*names: str) -> None:
    with psycopg.connect(_conninfo("postgres"), autocommit=True) as conn:
        for name in names:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not found:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                print(f"created database {name}")


def migrate_pgstac(dbname: str) -> None:
    from pypgstac.db import PgstacDB
    from pypgstac.migrate import Migrate

    db = PgstacDB(dsn=_conninfo(dbname))
    try:
        print("pgstac:", Migrate(db).run_migration())
    finally:
        pool = db.pool
        db.disconnect()
        if pool is not None:
            pool.close()
    with psycopg.connect(_conninfo(dbname), autocommit=True) as conn:
        conn.execute("SET search_path TO pgstac, public")
        conn.execute(
            "SELECT upsert_queryables(%s::jsonb, NULL, NULL, false)", [json.dumps(QUERYABLES)]
        )
        conn.execute(
            "INSERT INTO pgstac_settings (name, value) VALUES ('context', 'on') "
            "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
        )


def create_bucket(storage_root: str) -> None:
    url = urlparse(storage_root)
    if url.scheme != "s3":
        return
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": os.environ.get("AWS_ENDPOINT_URL")})
    deadline = time.monotonic() + 120
    while True:  # the filer answers before its first volume takes writes
        try:
            if not fs.exists(url.netloc):
                fs.mkdir(url.netloc)
            fs.pipe(f"{url.netloc}/.stack-init", b"ok")
            fs.rm(f"{url.netloc}/.stack-init")
            print(f"bucket {url.netloc} ready")
            return
        except Exception as e:  # connection refused, no writable volume yet, 5xx
            if time.monotonic() > deadline:
                raise
            print(f"waiting for the object store: {e}", file=sys.stderr)
            time.sleep(2)
            fs.invalidate_cache()


def main() -> int:
    dagster_db = os.environ["DAGSTER_PG_DB"]
    pgstac_db = os.environ["PGSTAC_DB"]
    create_databases(dagster_db, pgstac_db)
    subprocess.run(["dagster", "instance", "migrate"], check=True)
    migrate_pgstac(pgstac_db)
    create_bucket(os.environ.get("RGB_ASSETS_STORAGE_ROOT", ""))
    print("stack-init: done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
