"""The ``rgb-assets`` command: manage AOIs, serve the request API, build sample data, run the demo.

AOI commands change the registry file *and* the Dagster dynamic partition together, so they need
the same ``DAGSTER_HOME`` the webserver and daemon use.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rgb_assets.config import Settings
from rgb_assets.core.domain.errors import InputError, RgbAssetsError


def _instance():  # type: ignore[no-untyped-def]
    """The persistent instance; refuse an ephemeral one (partitions would silently vanish)."""
    if not Settings.from_env().dagster_home:
        raise InputError(
            "DAGSTER_HOME",
            "is not set: point it at the Dagster instance folder the webserver/daemon use",
        )
    from dagster import DagsterInstance

    return DagsterInstance.get()


def _registry():  # type: ignore[no-untyped-def]
    from rgb_assets.definitions import pipeline_resources

    return pipeline_resources(Settings.from_env())["storage"].aois()  # type: ignore[attr-defined]


def _aoi_add(args: argparse.Namespace) -> int:
    from rgb_assets.aois import register_aoi

    path = Path(args.geojson_file)
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError("geojson_file", f"cannot read {path}: {e.strerror}") from None
    with _instance() as instance:
        _, change = register_aoi(_registry(), instance, args.name, text, replace=args.replace)
    print(change.message)
    return 0


def _aoi_list(args: argparse.Namespace) -> int:
    registry = _registry()
    with _instance() as instance:
        from rgb_assets.partitions import aoi_partitions

        partitions = set(instance.get_dynamic_partitions(aoi_partitions.name))
    for aoi in registry.list():
        bbox = ", ".join(f"{v:.5f}" for v in aoi.bbox)
        flag = "" if aoi.name in partitions else "  (no Dagster partition)"
        print(f"{aoi.name}\t[{bbox}]{flag}")
    return 0


def _aoi_remove(args: argparse.Namespace) -> int:
    from rgb_assets.aois import remove_aoi

    with _instance() as instance:
        change = remove_aoi(_registry(), instance, args.name)
    print(change.message)
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from rgb_assets.service.app import create_app

    settings = Settings.from_env()
    uvicorn.run(create_app(settings.dagster_graphql), host=args.host, port=args.port)
    return 0


def _sample_data(args: argparse.Namespace) -> int:
    from rgb_assets.tools.sample_data import build_sample_catalog

    dest = Path(args.dest)
    print(build_sample_catalog(dest, cache_dir=dest.parent / "cache", force=args.force))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from rgb_assets.tools.demo import main as demo_main

    return demo_main()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rgb-assets", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    aoi = sub.add_parser("aoi", help="register, list and remove areas of interest")
    aoi_sub = aoi.add_subparsers(dest="aoi_command", required=True)
    add = aoi_sub.add_parser("add", help="register an AOI from a GeoJSON file")
    add.add_argument("name", help="slug: lowercase letters, digits, hyphens")
    add.add_argument("geojson_file", help="GeoJSON Polygon/MultiPolygon geometry or Feature")
    add.add_argument("--replace", action="store_true", help="replace an existing geometry")
    add.set_defaults(func=_aoi_add)
    aoi_sub.add_parser("list", help="list registered AOIs").set_defaults(func=_aoi_list)
    rm = aoi_sub.add_parser("remove", help="remove an AOI (products already made are kept)")
    rm.add_argument("name")
    rm.set_defaults(func=_aoi_remove)

    serve = sub.add_parser("serve", help="run the HTTP request API (FastAPI + uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.set_defaults(func=_serve)

    sample = sub.add_parser("sample-data", help="build the embedded offline sample catalog")
    sample.add_argument("--dest", default="data/sample")
    sample.add_argument("--force", action="store_true", help="rebuild even if present")
    sample.set_defaults(func=_sample_data)

    sub.add_parser("demo", help="run the offline demo end to end").set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as e:
        print(f"error: {e.field}: {e.problem}", file=sys.stderr)
        return 2
    except RgbAssetsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
