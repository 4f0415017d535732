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
