"""Every setting of rgb-assets, read from the environment in this one module.

``Settings.from_env()`` is called where a process starts (the code location's definitions, the
CLI, the request service, the demo). Steps never read the environment: the settings reach them
as resource configuration, which the Dask executor also ships in the run config to every worker
(:meth:`Settings.resource_run_config`), so a step runs the same on any worker of any cluster
whatever that worker's own environment. ``SETTINGS`` documents each variable; the README's
configuration table is checked against it by the tests.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from rgb_assets.core.domain.collection_specs import EARTH_SEARCH_URL, get_collection
from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.domain.limits import Limits
from rgb_assets.core.domain.months import Month

#: Deployments and the STAC source each uses by default.
SAMPLE_CATALOG = "data/sample/collection.json"
DEFAULT_STAC_URLS = {"local": EARTH_SEARCH_URL, "demo": SAMPLE_CATALOG}
#: Engines that can run the pipeline's steps.
EXECUTORS = ("dask", "ray")


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, default (as text, None: unset) and meaning."""

    variable: str
    default: str | None
    meaning: str


#: Every variable the project reads, in README order.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "RGB_ASSETS_DEPLOYMENT",
        "local",
        "`local`: Earth Search + `./data/store`; `demo` (set by `make demo/dev`): the embedded "
        "sample catalog",
    ),
    Setting(
        "RGB_ASSETS_STAC_URL",
        EARTH_SEARCH_URL,
        "a STAC API URL, or a local static catalog / collection JSON (default per deployment)",
    ),
    Setting(
        "RGB_ASSETS_COLLECTION",
        "sentinel-2-l2a",
        "`sentinel-2-l2a` or `landsat-c2-l2` (the collection registry)",
    ),
    Setting(
        "RGB_ASSETS_STORAGE_ROOT",
        "data/store",
        "a local folder or `s3://bucket/prefix` (s3fs for writes, GDAL for reads)",
    ),
    Setting(
        "AWS_ENDPOINT_URL_S3",
        None,
        "endpoint of an S3-compatible store (MinIO, SeaweedFS); falls back to `AWS_ENDPOINT_URL`."
        " Credentials come from the AWS credential chain and are never read here",
    ),
    Setting("AWS_ENDPOINT_URL", None, "the standard AWS endpoint variable, used for S3"),
    Setting(
        "RGB_ASSETS_DASK_SCHEDULER",
        None,
        "address of an existing Dask scheduler (`tcp://host:8786`); unset: a `LocalCluster` "
        "per run",
    ),
    Setting(
        "RGB_ASSETS_EXECUTOR",
        "dask",
        "`dask` (the Dask executor) or `ray` (dagster-ray's `ray_executor`, on `RAY_ADDRESS`)",
    ),
    Setting(
        "RAY_ADDRESS",
        None,
        "the job API of the Ray cluster `RGB_ASSETS_EXECUTOR=ray` submits steps to "
        "(`http://127.0.0.1:8265`); unset: Ray's default",
    ),
    Setting("RGB_ASSETS_FIRST_MONTH", "2013-04", "first month partition (YYYY-MM)"),
    Setting(
        "RGB_ASSETS_PUBLISH_URL",
        None,
        "a STAC API with the Transactions extension to publish both catalogs to",
    ),
    Setting(
        "RGB_ASSETS_SENSOR_LOOKBACK_MONTHS",
        "2",
        "how many months back `new_scenes_sensor` looks (the reference month included)",
    ),
    Setting("RGB_ASSETS_SENSOR_AOIS_PER_TICK", "20", "how many AOIs one sensor tick searches"),
    Setting(
        "RGB_ASSETS_SENSOR_REFERENCE_MONTH",
        None,
        "pin the sensor's reference month (YYYY-MM; reprocessing, tests); unset: this month",
    ),
    Setting(
        "RGB_ASSETS_AOI_INBOX",
        None,
        "folder `aoi_files_sensor` registers AOI files from; unset: `<storage root>/aois-inbox`",
    ),
    Setting("RGB_ASSETS_MAX_TOI_MONTHS", "24", "longest time of interest a REST request may span"),
    Setting(
        "RGB_ASSETS_DAGSTER_GRAPHQL",
        "http://127.0.0.1:3000/graphql",
        "the Dagster webserver `rgb-assets serve` launches runs through",
    ),
    Setting(
        "RGB_ASSETS_API_TOKEN",
        None,
        "bearer token `rgb-assets serve` requires on `/requests` (`Authorization: Bearer ...`);"
        " unset: no authentication (the service listens on 127.0.0.1 only)",
    ),
    Setting(
        "RGB_ASSETS_ALLOWED_ROOTS",
        None,
        "local folders (`:`-separated) asset hrefs may be read from, besides the local STAC "
        "source's own folder; hrefs elsewhere on disk are refused",
    ),
    Setting(
        "RGB_ASSETS_STAC_TIMEOUT_S",
        "60",
        "bound in seconds on one STAC API call, retries included: a hanging API fails within it",
    ),
    Setting("RGB_ASSETS_MAX_AOI_VERTICES", "10000", "most vertices an AOI may have"),
    Setting("RGB_ASSETS_MAX_AOI_AREA_KM2", "2500", "largest AOI area (geodesic, km²)"),
    Setting(
        "RGB_ASSETS_MIN_AOI_AREA_M2", "100", "smallest AOI area (geodesic, m²; one 10 m pixel)"
    ),
    Setting(
        "RGB_ASSETS_MAX_OUTPUT_PIXELS",
        "50000000",
        "most pixels of one composite (from the AOI, CRS and resolution)",
    ),
    Setting("RGB_ASSETS_MAX_SCENES", "200", "most scenes one AOI x month may archive"),
    Setting("RGB_ASSETS_MAX_BODY_BYTES", "1048576", "largest REST request body (bytes); 413 above"),
    Setting(
        "RGB_ASSETS_PUBLIC_URL",
        None,
        "the base URL clients reach `rgb-assets serve` at (`http://host:8080`): derived items get "
        "`xyz` web-map links to its tiles, and Dagster previews load the thumbnail from it",
    ),
    Setting(
        "DAGSTER_HOME",
        None,
        "Dagster's instance folder (runs, AOI partitions); `make demo/dev` use `.dagster_home`",
    ),
)
VARIABLES = frozenset(s.variable for s in SETTINGS)


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name) or str(default)
    try:
        value = int(text)
    except ValueError:
        raise InputError(name, f"{text!r} is not an integer") from None
    if value < 1:
        raise InputError(name, f"{value} must be at least 1")
    return value


def _positive_number(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name) or str(default)
    try:
        value = float(text)
    except ValueError:
        raise InputError(name, f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(name, f"{text} must be a positive number")
    return value


def _allowed_roots(text: str | None) -> tuple[str, ...]:
    """Absolute, symlink-resolved folders; each must exist (a typo would confine nothing)."""
    roots = []
    for part in (text or "").split(os.pathsep):
        if not part.strip():
            continue
        path = Path(part.strip()).expanduser()
        if not path.is_dir():
            raise InputError("RGB_ASSETS_ALLOWED_ROOTS", f"{part!r} is not an existing folder")
        roots.append(str(path.resolve()))
    return tuple(roots)


def _storage_root(text: str) -> str:
    if "://" in text:
        scheme = text.split("://", 1)[0]
        if scheme not in ("s3", "file", "memory"):
            raise InputError(
                "RGB_ASSETS_STORAGE_ROOT",
                f"{text!r}: use a local folder or s3://bucket/prefix (not {scheme}://)",
            )
        return text
    return os.path.abspath(text)


@dataclass(frozen=True)
class Settings:
    """The deployment's configuration, validated once when a process starts."""

    #: ``local`` or ``demo``: picks the default STAC source.
    deployment: str = "local"
    #: STAC API URL, or an absolute path / URL of a static catalog or collection.
    stac_url: str = EARTH_SEARCH_URL
    #: Registry key of the composited collection (``sentinel-2-l2a`` | ``landsat-c2-l2``).
    collection: str = "sentinel-2-l2a"
    #: Absolute local folder or ``s3://bucket/prefix`` holding everything the pipeline writes.
    storage_root: str = "data/store"
    #: Endpoint of an S3-compatible store (``None``: AWS itself, or a local root).
    s3_endpoint_url: str | None = None
    #: An existing Dask scheduler; ``None``: a ``LocalCluster`` per run.
    dask_scheduler: str | None = None
    #: ``dask`` or ``ray``: the engine that runs steps.
    executor: str = "dask"
    #: The job API of the ``ray`` executor's cluster; ``None``: Ray's default.
    ray_address: str | None = None
    #: First month partition.
    first_month: str = "2013-04"
    #: Transactions-enabled STAC API both catalogs are also published to.
    publish_url: str | None = None
    sensor_lookback_months: int = 2
    sensor_aois_per_tick: int = 20
    sensor_reference_month: str | None = None
    aoi_inbox: str | None = None
    max_toi_months: int = 24
    dagster_graphql: str = "http://127.0.0.1:3000/graphql"
    #: Base URL of ``rgb-assets serve`` as clients reach it (map tiles, products over HTTP).
    public_url: str | None = None
    dagster_home: str | None = None
    #: Bearer token of the REST service (None: no authentication).
    api_token: str | None = None
    #: Local folders (absolute, resolved) asset hrefs may be read from, besides the source's.
    allowed_roots: tuple[str, ...] = ()
    #: Bound on one STAC API call, retries included (seconds).
    stac_timeout_s: float = 60.0
    #: What one request, AOI or partition may cost.
    limits: Limits = Limits()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every ``RGB_ASSETS_*`` variable (errors name the variable)."""
        env = os.environ if env is None else env
        deployment = env.get("RGB_ASSETS_DEPLOYMENT") or "local"
        if deployment not in DEFAULT_STAC_URLS:
            raise InputError(
                "RGB_ASSETS_DEPLOYMENT",
                f"{deployment!r} is not one of {', '.join(DEFAULT_STAC_URLS)}",
            )
        url = env.get("RGB_ASSETS_STAC_URL") or DEFAULT_STAC_URLS[deployment]
        if "://" not in url:
            url = os.path.abspath(url)
        collection = env.get("RGB_ASSETS_COLLECTION") or "sentinel-2-l2a"
        get_collection(collection, field="RGB_ASSETS_COLLECTION")
        first = env.get("RGB_ASSETS_FIRST_MONTH") or "2013-04"
        Month.parse(first, field="RGB_ASSETS_FIRST_MONTH")
        reference = env.get("RGB_ASSETS_SENSOR_REFERENCE_MONTH") or None
        if reference:
            Month.parse(reference, field="RGB_ASSETS_SENSOR_REFERENCE_MONTH")
        root = _storage_root(env.get("RGB_ASSETS_STORAGE_ROOT") or "data/store")
        endpoint = None
        if root.startswith("s3://"):
            endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
        inbox = env.get("RGB_ASSETS_AOI_INBOX") or None
        engine = env.get("RGB_ASSETS_EXECUTOR") or "dask"
        if engine not in EXECUTORS:
            raise InputError(
                "RGB_ASSETS_EXECUTOR", f"{engine!r} is not one of {', '.join(EXECUTORS)}"
            )
        return cls(
            deployment=deployment,
            stac_url=url,
            collection=collection,
            storage_root=root,
            s3_endpoint_url=endpoint,
            dask_scheduler=env.get("RGB_ASSETS_DASK_SCHEDULER") or None,
            executor=engine,
            ray_address=env.get("RAY_ADDRESS") or None,
            first_month=first,
            publish_url=env.get("RGB_ASSETS_PUBLISH_URL") or None,
            sensor_lookback_months=_positive_int(env, "RGB_ASSETS_SENSOR_LOOKBACK_MONTHS", 2),
            sensor_aois_per_tick=_positive_int(env, "RGB_ASSETS_SENSOR_AOIS_PER_TICK", 20),
            sensor_reference_month=reference,
            aoi_inbox=str(Path(inbox).expanduser().resolve()) if inbox else None,
            max_toi_months=_positive_int(env, "RGB_ASSETS_MAX_TOI_MONTHS", 24),
            dagster_graphql=env.get("RGB_ASSETS_DAGSTER_GRAPHQL")
            or "http://127.0.0.1:3000/graphql",
            public_url=(env.get("RGB_ASSETS_PUBLIC_URL") or "").strip().rstrip("/") or None,
            dagster_home=env.get("DAGSTER_HOME") or None,
            api_token=env.get("RGB_ASSETS_API_TOKEN") or None,
            allowed_roots=_allowed_roots(env.get("RGB_ASSETS_ALLOWED_ROOTS")),
            stac_timeout_s=_positive_number(env, "RGB_ASSETS_STAC_TIMEOUT_S", 60),
            limits=Limits(
                max_aoi_vertices=_positive_int(env, "RGB_ASSETS_MAX_AOI_VERTICES", 10_000),
                max_aoi_area_km2=_positive_number(env, "RGB_ASSETS_MAX_AOI_AREA_KM2", 2500),
                min_aoi_area_m2=_positive_number(env, "RGB_ASSETS_MIN_AOI_AREA_M2", 100),
                max_output_pixels=_positive_int(env, "RGB_ASSETS_MAX_OUTPUT_PIXELS", 50_000_000),
                max_scenes=_positive_int(env, "RGB_ASSETS_MAX_SCENES", 200),
                max_toi_months=_positive_int(env, "RGB_ASSETS_MAX_TOI_MONTHS", 24),
                max_body_bytes=_positive_int(env, "RGB_ASSETS_MAX_BODY_BYTES", 1_048_576),
            ),
        )

    def replace(self, **changes: Any) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)} | changes
        return Settings(**values)

    def resource_run_config(self) -> dict[str, Any]:
        """The ``resources`` section of a run config carrying these settings.

        Run config overrides the values resources were built with in whatever process loads the
        definitions, so the executor merges this into every step it ships to a worker.
        """
        storage: dict[str, Any] = {"root": self.storage_root}
        if self.s3_endpoint_url:
            storage["endpoint_url"] = self.s3_endpoint_url
        stac = {
            "url": self.stac_url,
            "collection": self.collection,
            "timeout_s": self.stac_timeout_s,
            "allowed_roots": list(self.allowed_roots),
        }
        if self.public_url:
            storage["public_url"] = self.public_url
        return {
            "stac": {"config": stac},
            "storage": {"config": storage},
            "limits": {"config": vars(self.limits)},
            "catalogs": {"config": {"publish_url": self.publish_url}},
        }


def merge_run_config(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` merged into ``base`` key by key (nested mappings merge, values replace)."""
    out: dict[str, Any] = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_run_config(out[key], value)
        else:
            out[key] = value
    return out


def get_settings() -> Settings:
    """The settings of this process, from its environment."""
    return Settings.from_env()


def demo_environment(root: Path) -> dict[str, str]:
    """What ``make demo`` sets for itself and the processes it starts (defaults only)."""
    return {
        "DAGSTER_HOME": str(root / ".dagster_home"),
        "RGB_ASSETS_DEPLOYMENT": "demo",
    }


def apply_defaults(defaults: Mapping[str, str]) -> None:
    """Set variables that are not set yet (the demo's, for itself and its Dask workers)."""
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a process started from this one, with ``extra`` set."""
    return dict(os.environ) | dict(extra)


@contextlib.contextmanager
def environment(extra: Mapping[str, str]) -> Iterator[None]:
    """``extra`` set in this process's environment for the block, then restored (for child
    processes started by libraries that take no environment argument, like Dask's nanny)."""
    before = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
