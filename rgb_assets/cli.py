"""The ``rgb-assets`` command: manage AOIs, serve the request API, build sample data, run the demo.

AOI commands change the registry file *and* the Dagster dynamic partition together, so they need
the same ``DAGSTER_HOME`` the webserver and daemon use.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rgb_assets.config import Settings
from rgb_assets.core.domain.errors import InputError, RgbAssetsError


def _instance(settings: Settings):  # type: ignore[no-untyped-def]
    """The persistent instance; refuse an ephemeral one (partitions would silently vanish)."""
    if not settings.dagster_home:
        raise InputError(
            "DAGSTER_HOME",
            "is not set: point it at the Dagster instance folder the webserver/daemon use",
        )
    from dagster import DagsterInstance

    return DagsterInstance.get()


def _registry(settings: Settings):  # type: ignore[no-untyped-def]
    from rgb_assets.definitions import pipeline_resources

    return pipeline_resources(settings)["storage"].aois()  # type: ignore[attr-defined]


def _read_geojson(path: Path) -> str:
    """The file's text; unreadable or non-UTF-8 files are an input error naming the file."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError("geojson_file", f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise InputError(
            "geojson_file", f"{path} is not UTF-8 text (byte {e.start}): GeoJSON must be UTF-8"
        ) from None


def _dry_run(settings: Settings, args: argparse.Namespace, text: str) -> int:
    """Validate and estimate one month of the AOI (scenes from a real search); change nothing."""
    from rgb_assets.core.domain.aoi import Aoi
    from rgb_assets.core.domain.limits import estimate_partition, precheck_vertices
    from rgb_assets.core.domain.months import Month
    from rgb_assets.core.stac.source import SearchRequest
    from rgb_assets.definitions import pipeline_resources
    from rgb_assets.partitions import check_month_in_range, month_partitions

    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError("aoi", f"is not valid JSON: {e.msg}") from None
    precheck_vertices(obj, settings.limits)
    aoi = Aoi.create(args.name, obj)
    if args.month:
        month = check_month_in_range(Month.parse(args.month, "--month"), "--month")
    else:
        month = Month.parse(month_partitions.get_partition_keys()[-1])
    stac = pipeline_resources(settings)["stac"]
    spec = stac.spec()
    source = stac.open()
    found = source.search(
        SearchRequest(source.collection_id(spec), aoi, month, 80.0, spec.platforms)
    )
    estimate = estimate_partition(
        aoi.geometry, spec.key, spec.resolution, len(found), settings.limits
    )
    print(json.dumps({"aoi": aoi.name, "month": month.key, **estimate.as_dict()}, indent=1))
    print(f"dry run: AOI {aoi.name!r} is valid and within limits; nothing registered")
    return 0


def _aoi_add(args: argparse.Namespace) -> int:
    from rgb_assets.aois import register_aoi

    settings = Settings.from_env()
    text = _read_geojson(Path(args.geojson_file))
    if args.dry_run:
        return _dry_run(settings, args, text)
    with _instance(settings) as instance:
        _, change = register_aoi(
            _registry(settings),
            instance,
            args.name,
            text,
            replace=args.replace,
            limits=settings.limits,
        )
    print(change.message)
    return 0


def _aoi_list(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    registry = _registry(settings)
    with _instance(settings) as instance:
        from rgb_assets.partitions import aoi_partitions

        partitions = set(instance.get_dynamic_partitions(aoi_partitions.name))
    for aoi in registry.list():
        bbox = ", ".join(f"{v:.5f}" for v in aoi.bbox)
        flag = "" if aoi.name in partitions else "  (no Dagster partition)"
        print(f"{aoi.name}\t[{bbox}]{flag}")
    return 0


def _aoi_remove(args: argparse.Namespace) -> int:
    from rgb_assets.aois import remove_aoi

    settings = Settings.from_env()
    with _instance(settings) as instance:
        change = remove_aoi(_registry(settings), instance, args.name)
    print(change.message)
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from rgb_assets.service.app import create_app

    uvicorn.run(create_app(Settings.from_env()), host=args.host, port=args.port)
    return 0


def _sample_data(args: argparse.Namespace) -> int:
    from rgb_assets.tools.sample_data import build_sample_catalog

    dest = Path(args.dest)
    print(build_sample_catalog(dest, cache_dir=dest.parent / "cache", force=args.force))
    return 0


def _code_server(args: argparse.Namespace) -> int:
    from rgb_assets.code_server import main

    return main(args.args)


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
    add.add_argument(
        "--dry-run",
        action="store_true",
        help="validate, check the limits and print the estimate for one month; register nothing",
    )
    add.add_argument("--month", help="month the dry run searches (YYYY-MM; default: the latest)")
    add.set_defaults(func=_aoi_add)
    aoi_sub.add_parser("list", help="list registered AOIs").set_defaults(func=_aoi_list)
    rm = aoi_sub.add_parser("remove", help="remove an AOI (products already made are kept)")
    rm.add_argument("name")
    rm.set_defaults(func=_aoi_remove)

    serve = sub.add_parser("serve", help="run the HTTP request API (FastAPI + uvicorn)")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: this machine only)"
    )
    serve.add_argument("--port", type=int, default=8080)
    serve.set_defaults(func=_serve)

    sample = sub.add_parser("sample-data", help="build the embedded offline sample catalog")
    sample.add_argument("--dest", default="data/sample")
    sample.add_argument("--force", action="store_true", help="rebuild even if present")
    sample.set_defaults(func=_sample_data)

    code = sub.add_parser(
        "code-server",
        help="serve the code location to Dagster, runs forked from a warm process",
        add_help=False,
    )
    code.add_argument("args", nargs=argparse.REMAINDER)
    code.set_defaults(func=_code_server)
    sub.add_parser("demo", help="run the offline demo end to end").set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["code-server"]:  # its own options (-h is the bind host, as in Dagster's)
        return _code_server(argparse.Namespace(args=argv[1:]))
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as e:
        print(f"error: {e.field}: {_one_line(e.problem)}", file=sys.stderr)
        return 2
    except RgbAssetsError as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # never a traceback: one line naming what failed
        print(f"error: {type(e).__name__}: {_one_line(str(e))}", file=sys.stderr)
        return 1


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
