"""Cloud, shadow, snow, nodata and saturation masks from the collections' mask bands.

Pure numpy on arrays of any shape, so the same functions run inside Dask blocks and in tests.
Sentinel-2 L2A uses the Scene Classification Layer (SCL) classes; Landsat Collection 2 Level-2
uses QA_PIXEL bit flags and confidence pairs (USGS LSDS-1619, Collection 2 Level-2 Science
Product Guide, table 6-3) and, where the asset exists, QA_RADSAT saturation bits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from rgb_assets.core.domain.errors import InputError

# Sentinel-2 L2A Scene Classification values.
SCL_CLASSES: dict[str, int] = {
    "no_data": 0,
    "saturated_or_defective": 1,
    "dark_area_pixels": 2,
    "cloud_shadows": 3,
    "vegetation": 4,
    "not_vegetated": 5,
    "water": 6,
    "unclassified": 7,
    "cloud_medium_probability": 8,
    "cloud_high_probability": 9,
    "thin_cirrus": 10,
    "snow": 11,
}
DEFAULT_SCL_EXCLUDE: tuple[int, ...] = (0, 1, 3, 8, 9, 10, 11)
# The SCL classes that are clouds or their shadows: the only ones opened and dilated. No data
# (0), defective (1) and snow (11) stay masked exactly where they are.
DEFAULT_SCL_CLOUD: tuple[int, ...] = (3, 8, 9, 10)
# Defaults measured on the demo sample: README "Cloud-free by default", residue_sweep.py.
DEFAULT_OPENING = 1
DEFAULT_DILATION = 2

# Landsat C2 L2 QA_PIXEL single-bit flags.
QA_PIXEL_BITS: dict[str, int] = {
    "fill": 0,
    "dilated_cloud": 1,
    "cirrus": 2,
    "cloud": 3,
    "cloud_shadow": 4,
    "snow": 5,
    "clear": 6,
    "water": 7,
}
# Two-bit confidence fields: offset of the low bit. Values 0 none, 1 low, 2 medium, 3 high.
QA_PIXEL_CONFIDENCE: dict[str, int] = {
    "cloud": 8,
    "cloud_shadow": 10,
    "snow": 12,
    "cirrus": 14,
}
DEFAULT_QA_FLAGS: tuple[str, ...] = (
    "fill",
    "dilated_cloud",
    "cirrus",
    "cloud",
    "cloud_shadow",
    "snow",
)
# The QA_PIXEL bits that are clouds or their shadows: opened and dilated; fill and snow are not.
DEFAULT_QA_CLOUD: tuple[str, ...] = ("dilated_cloud", "cirrus", "cloud", "cloud_shadow")
# QA_RADSAT: bit n-1 is band n saturated (Landsat 8/9 OLI); blue, green, red are bands 2, 3, 4.
QA_RADSAT_BAND_BITS: dict[str, int] = {"blue": 1, "green": 2, "red": 3}


@dataclass(frozen=True)
class MaskRule:
    """Which mask-band values mean "not a clear observation" (picklable for Dask workers).

    ``scl_exclude`` lists SCL classes to drop; ``qa_flags`` QA_PIXEL bits to drop;
    ``qa_confidence`` maps a confidence field to the lowest level dropped (e.g. ``{"cloud": 2}``
    drops medium and high cloud confidence).

    Clean-up acts on clouds only: the classes ``scl_cloud`` (or bits ``qa_cloud``) form a cloud
    mask that is first opened by ``opening`` pixels (isolated speckle, e.g. a bright roof
    labelled cloud, is not grown; it stays masked itself), then dilated by ``dilation`` pixels
    (square structuring elements, half-width N). No data, defective, snow and out-of-footprint
    pixels are masked where they are and never grown, so clear pixels along data edges stay.
    """

    kind: str
    scl_exclude: tuple[int, ...] = DEFAULT_SCL_EXCLUDE
    qa_flags: tuple[str, ...] = DEFAULT_QA_FLAGS
    qa_confidence: Mapping[str, int] = field(default_factory=dict)
    use_radsat: bool = True
    opening: int = DEFAULT_OPENING
    dilation: int = DEFAULT_DILATION
    scl_cloud: tuple[int, ...] = DEFAULT_SCL_CLOUD
    qa_cloud: tuple[str, ...] = DEFAULT_QA_CLOUD

    def __post_init__(self) -> None:
        if self.kind not in ("scl", "qa_pixel"):
            raise InputError("mask.kind", f"{self.kind!r} is not 'scl' or 'qa_pixel'")
        bad = [c for c in self.scl_exclude if not 0 <= int(c) <= 11]
        if bad:
            raise InputError("mask.scl_exclude", f"{bad} are not SCL classes (0-11)")
        bad = [c for c in self.scl_cloud if not 0 <= int(c) <= 11]
        if bad:
            raise InputError("mask.scl_cloud", f"{bad} are not SCL classes (0-11)")
        bad_flags = [f for f in self.qa_cloud if f not in QA_PIXEL_BITS]
        if bad_flags:
            raise InputError(
                "mask.qa_cloud", f"{bad_flags} are not QA_PIXEL flags ({', '.join(QA_PIXEL_BITS)})"
            )
        bad_flags = [f for f in self.qa_flags if f not in QA_PIXEL_BITS]
        if bad_flags:
            raise InputError(
                "mask.qa_flags", f"{bad_flags} are not QA_PIXEL flags ({', '.join(QA_PIXEL_BITS)})"
            )
        for name, level in self.qa_confidence.items():
            if name not in QA_PIXEL_CONFIDENCE or not 1 <= int(level) <= 3:
                raise InputError(
                    "mask.qa_confidence",
                    f"{name}={level}: names are {', '.join(QA_PIXEL_CONFIDENCE)}, levels 1-3",
                )
        if not 0 <= self.dilation <= 100:
            raise InputError("mask.dilation", f"{self.dilation} is not in 0..100 pixels")
        if not 0 <= self.opening <= 20:
            raise InputError("mask.opening", f"{self.opening} is not in 0..20 pixels")

    @property
    def halo(self) -> int:
        """Pixels of neighbourhood the clean-up needs around a tile (erode + dilate + dilate)."""
        return 2 * self.opening + self.dilation if self.dilation else 0

    def clear(self, mask: np.ndarray) -> np.ndarray:
        """True where the mask band says the observation is clear (before any clean-up)."""
        if self.kind == "scl":
            return scl_clear(mask, self.scl_exclude)
        return qa_pixel_clear(mask, self.qa_flags, self.qa_confidence)

    def cloud(self, mask: np.ndarray) -> np.ndarray:
        """True where the mask band says cloud, cirrus or cloud shadow (what clean-up grows)."""
        if self.kind == "scl":
            return ~scl_clear(mask, self.scl_cloud)
        return ~qa_pixel_clear(mask, self.qa_cloud)

    def cleaned_clear(self, mask: np.ndarray) -> np.ndarray:
        """``clear`` minus the opened and dilated cloud mask, over the last two axes.

        Run on a tile with ``halo`` pixels of overlap so the result does not depend on tiling.
        """
        clear = self.clear(mask)
        if not self.dilation:
            return clear
        cloud = open_mask(self.cloud(mask), self.opening)
        clear &= ~grow(cloud, self.dilation)
        return clear

    def describe(self) -> dict[str, object]:
        """The rule as JSON-friendly settings (for metadata and band attributes)."""
        out: dict[str, object] = {"kind": self.kind}
        if self.kind == "scl":
            out |= {"scl_exclude": sorted(self.scl_exclude), "scl_cloud": sorted(self.scl_cloud)}
        else:
            out |= {
                "qa_flags": list(self.qa_flags),
                "qa_cloud": list(self.qa_cloud),
                "qa_confidence": dict(self.qa_confidence),
                "use_radsat": self.use_radsat,
            }
        return out | {"opening": self.opening, "dilation": self.dilation}


def scl_clear(scl: np.ndarray, exclude: tuple[int, ...] = DEFAULT_SCL_EXCLUDE) -> np.ndarray:
    """SCL classes → clear. For uint8 SCL (classes 0-11), the excluded classes are bits of one
    32-bit word and a pixel is clear when bit ``scl`` of it is 0: three vectorised passes,
    about six times faster than ``np.isin`` or a lookup table. Values of 32 and above are
    not excluded classes and come out clear in both paths."""
    if scl.dtype == np.uint8 and all(0 <= c < 32 for c in exclude):
        word = np.uint32(sum(1 << c for c in set(exclude)))
        bit = np.right_shift(word, scl, dtype=np.uint32)
        bit &= np.uint32(1)
        return bit == 0
    return ~np.isin(scl, np.asarray(exclude, dtype=scl.dtype))


def qa_pixel_clear(
    qa: np.ndarray,
    flags: tuple[str, ...] = DEFAULT_QA_FLAGS,
    confidence: Mapping[str, int] | None = None,
) -> np.ndarray:
    qa = qa.astype(np.uint16, copy=False)
    bits = 0
    for name in flags:
        bits |= 1 << QA_PIXEL_BITS[name]
    bad = (qa & np.uint16(bits)) != 0
    for name, level in (confidence or {}).items():
        conf = (qa >> np.uint16(QA_PIXEL_CONFIDENCE[name])) & np.uint16(0b11)
        bad |= conf >= level
    return ~bad


def qa_radsat_clear(
    radsat: np.ndarray, bands: tuple[str, ...] = ("red", "green", "blue")
) -> np.ndarray:
    bits = 0
    for b in bands:
        bits |= 1 << QA_RADSAT_BAND_BITS[b]
    return (radsat.astype(np.uint16, copy=False) & np.uint16(bits)) == 0


def dilate_invalid(clear: np.ndarray, pixels: int) -> np.ndarray:
    """Shrink the clear area by ``pixels`` (square structuring element) over the last two axes."""
    if pixels <= 0:
        return clear
    return ~grow(~clear, pixels)


def grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Binary dilation of ``mask`` by a (2p+1)² square over the last two axes (outside: False).

    A separable running maximum: O(pixels) shifted ORs per axis.
    """
    if pixels <= 0:
        return mask
    bad = mask
    for axis in (-1, -2):
        grown = bad.copy()
        n = bad.shape[axis]
        for s in range(1, min(pixels, n - 1) + 1):
            lo = [slice(None)] * bad.ndim
            hi = [slice(None)] * bad.ndim
            lo[axis], hi[axis] = slice(0, n - s), slice(s, n)
            grown[tuple(lo)] |= bad[tuple(hi)]
            grown[tuple(hi)] |= bad[tuple(lo)]
        bad = grown
    return bad


def open_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Binary opening by a (2p+1)² square: erosion then dilation, removing True features
    narrower than 2p+1 pixels (speckle) and keeping larger ones unchanged. Beyond the array
    the mask counts as True for the erosion, so features touching the edge are not eroded away
    by tiling."""
    if pixels <= 0:
        return mask
    eroded = ~grow(~mask, pixels)
    return grow(eroded, pixels)
