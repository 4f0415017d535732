"""Mask clean-up and haze-test settings measured on the demo's real Sentinel-2 sample.

Run ``python benchmarks/residue_sweep.py`` after ``make sample-data``. For each demo month
(2019-06..2019-09) over ``data/sample_aoi.geojson`` on the demo's grid (the AOI's UTM zone,
10 m, clipped to the AOI) and each setting, it computes the composite in process and reports the
valid fraction (AOI pixels with a value) and the residue fraction (valid pixels that are bright
and hazy by ``rgb_assets.core.raster.residue.ResidueTest``; also ``blue > 0.08``, the issue's
first measure). Prints a table and writes ``benchmarks/results/residue_sweep.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import dask
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MONTHS = ("2019-06", "2019-07", "2019-08", "2019-09")

# (label, MaskRule kwargs, HazeRule kwargs, method)
PLAIN = {"opening": 0, "dilation": 0}
OFF = {"index": "none"}
SCL7 = {"scl_exclude": (0, 1, 3, 7, 8, 9, 10, 11)}
SETTINGS: list[tuple[str, dict, dict, str]] = [
    ("plain SCL median (before)", PLAIN, OFF, "median"),
    ("plain, SCL 7 also excluded", PLAIN | SCL7, OFF, "median"),
    ("dilation 1", {"opening": 0, "dilation": 1}, OFF, "median"),
    ("dilation 2", {"opening": 0, "dilation": 2}, OFF, "median"),
    ("dilation 3", {"opening": 0, "dilation": 3}, OFF, "median"),
    ("opening 1, dilation 2", {"opening": 1, "dilation": 2}, OFF, "median"),
    ("opening 2, dilation 5 (odc-stats)", {"opening": 2, "dilation": 5}, OFF, "median"),
    ("haze test only (median + 0.015)", PLAIN, {}, "median"),
    ("opening 1, dilation 2, haze margin 0.01", {}, {"margin": 0.01}, "median"),
    ("opening 1, dilation 2, haze margin 0.015 (default)", {}, {}, "median"),
    ("opening 1, dilation 2, haze margin 0.02", {}, {"margin": 0.02}, "median"),
    ("opening 1, dilation 2, haze margin 0.03", {}, {"margin": 0.03}, "median"),
    ("opening 1, dilation 3, haze margin 0.015", {"dilation": 3}, {}, "median"),
    ("opening 2, dilation 5, haze margin 0.015", {"opening": 2, "dilation": 5}, {}, "median"),
    ("default, few=keep (2 obs averaged)", {}, {"few": "keep"}, "median"),
    ("default, few=nodata", {}, {"few": "nodata"}, "median"),
    ("default, reference least hazy", {}, {"reference": "least_hazy"}, "median"),
    ("default, blue index", {}, {"index": "blue"}, "median"),
    ("default, medoid", {}, {}, "medoid"),
    ("default, geomedian", {}, {}, "geomedian"),
    ("default, p25", {}, {}, "p25"),
    ("default, p50", {}, {}, "p50"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run settings whose label contains this text")
    args = parser.parse_args()
    from odc.geo.xr import rasterize

    from rgb_assets.core.domain.aoi import Aoi
    from rgb_assets.core.domain.collection_specs import get_collection, resolve_item
    from rgb_assets.core.domain.months import Month
    from rgb_assets.core.raster.compositing import CompositeOptions, median_composite
    from rgb_assets.core.raster.grids import aoi_geometry, output_geobox
    from rgb_assets.core.raster.masking import MaskRule
    from rgb_assets.core.raster.residue import ResidueTest, residue_stats
    from rgb_assets.core.raster.robust import HazeRule
    from rgb_assets.core.stac.source import LocalStacSource, SearchRequest

    sample = ROOT / "data" / "sample" / "collection.json"
    if not sample.exists():
        print("run `make sample-data` first", file=sys.stderr)
        return 1
    feature = json.loads((ROOT / "data" / "sample_aoi.geojson").read_text())
    aoi = Aoi.create(feature["properties"]["name"], feature)
    spec = get_collection("sentinel-2-l2a")
    source = LocalStacSource(sample)
    geobox = output_geobox(aoi, spec.resolution)
    inside = rasterize(aoi_geometry(aoi), geobox).values
    months = {}
    for m in MONTHS:
        found = source.search(SearchRequest(spec.key, aoi, Month.parse(m)))
        months[m] = [resolve_item(i, spec) for i in found]
    test = ResidueTest()
    rows = []
    for label, mask_kw, haze_kw, method in SETTINGS:
        if args.only and args.only not in label:
            continue
        options = CompositeOptions(
            mask=MaskRule("scl", **mask_kw), haze=HazeRule(**haze_kw), method=method
        )
        row: dict = {"setting": label, "recipe": options.describe(), "months": {}}
        t0 = time.perf_counter()
        for m, items in months.items():
            ds = median_composite(items, geobox, options, aoi_geometry(aoi))
            with dask.config.set(scheduler="synchronous"):
                ds = ds.compute()
            valid = (ds["clear_count"].values > 0) & inside
            blue, red = ds["blue"].values, ds["red"].values
            res = residue_stats(blue, red, valid, test)
            row["months"][m] = {
                "scenes": len(items),
                "valid_fraction": round(float(valid.sum() / inside.sum()), 4),
                "residue_fraction": res["residue_fraction"],
                "blue_gt_0.08": round(float((blue[valid] > 0.08).mean()), 4),
                "blue_p99": round(float(np.percentile(blue[valid], 99)), 4),
                "mean_clear_count": round(float(ds["clear_count"].values[valid].mean()), 3),
            }
        row["seconds"] = round(time.perf_counter() - t0, 2)
        rows.append(row)
        cells = "  ".join(
            f"{m}: res {v['residue_fraction'] * 100:5.2f}% valid {v['valid_fraction']:.3f}"
            f" n {v['mean_clear_count']:.2f}"
            for m, v in row["months"].items()
        )
        print(f"{label:52s} {cells}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"residue_test": test.describe(), "grid": str(geobox.crs), "rows": rows}
    name = "residue_sweep.json" if not args.only else "residue_sweep_partial.json"
    (RESULTS / name).write_text(json.dumps(out, indent=1))
    print(f"written {RESULTS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
