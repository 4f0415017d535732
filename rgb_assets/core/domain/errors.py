"""Errors the pipeline raises on purpose: each names the input field and the problem."""

from __future__ import annotations


class RgbAssetsError(Exception):
    """Base class for errors the pipeline raises deliberately."""


class InputError(RgbAssetsError, ValueError):
    """Bad user input. ``field`` names where it came from, ``problem`` says what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class StacSourceError(RgbAssetsError):
    """A STAC source could not be opened or searched."""

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"stac_source {source!r}: {problem}")


class ChecksumError(RgbAssetsError):
    """Bytes read from a source do not match the checksum or size the source item declares."""


class MissingInputsError(RgbAssetsError):
    """Every item of a partition lacks an asset the composite needs: the step must fail (a
    "no data" success would hide a source that changed its asset keys). ``missing`` lists
    ``(item id, reason)`` pairs; the message names each item and the asset it lacks."""

    def __init__(self, where: str, missing: list[tuple[str, str]]) -> None:
        self.where = where
        self.missing = missing
        lines = "; ".join(f"item {item} {reason}" for item, reason in missing[:20])
        more = f"; and {len(missing) - 20} more" if len(missing) > 20 else ""
        super().__init__(
            f"{where}: all {len(missing)} items lack a required asset, nothing can be "
            f"composited: {lines}{more}"
        )


class RefusedInputsError(RgbAssetsError):
    """The search found items, and none could be archived because their assets were refused
    (local files outside the allowed roots, bytes that are not the claimed raster): the step
    must fail, since a "no data" success would hide a misconfigured source or a hostile
    catalog. ``refused`` lists ``(item id, reason)`` pairs."""

    def __init__(self, where: str, refused: list[tuple[str, str]]) -> None:
        self.where = where
        self.refused = refused
        lines = "; ".join(f"item {item}: {reason}" for item, reason in refused[:20])
        more = f"; and {len(refused) - 20} more" if len(refused) > 20 else ""
        super().__init__(
            f"{where}: none of the {len(refused)} items found could be archived ({lines}{more}). "
            "Local scenes are read only under RGB_ASSETS_ALLOWED_ROOTS or a local catalog's "
            "own folder."
        )
