"""Multihash checksums as used by the STAC ``file`` extension (``file:checksum``)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

# Multihash function codes → hashlib names.
_CODES = {0x11: "sha1", 0x12: "sha256", 0x13: "sha512", 0xD5: "md5", 0xB220: "blake2b"}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        b = data[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return value, pos
        shift += 7


class MalformedChecksum(ValueError):
    """Not a multihash at all (not hex, truncated, digest length differs from the header)."""


class UnsupportedChecksum(ValueError):
    """A well-formed multihash of an algorithm we cannot compute."""


def parse_multihash(text: str) -> tuple[str, str]:
    """``(hashlib name, hex digest)`` of a hex multihash.

    Raises :class:`MalformedChecksum` for garbage and :class:`UnsupportedChecksum` for a valid
    multihash of another algorithm: only the second may count as "unverifiable".
    """
    try:
        raw = bytes.fromhex(text)
        code, pos = _varint(raw, 0)
        length, pos = _varint(raw, pos)
    except (ValueError, IndexError, TypeError):
        raise MalformedChecksum(f"{text!r} is not a hex multihash") from None
    digest = raw[pos:]
    if len(digest) != length or length == 0:
        raise MalformedChecksum(
            f"{text!r}: digest of {len(digest)} bytes, the multihash header says {length}"
        )
    if code not in _CODES:
        raise UnsupportedChecksum(f"multihash code {code:#x} is not supported")
    return _CODES[code], digest.hex()


CHUNK = 1 << 20
SHA256_PREFIX = "1220"  # multihash: sha2-256 code 0x12, digest length 0x20


def stream_digest(f: BinaryIO, algorithm: str = "sha256") -> str:
    """Hex digest of a binary stream, read in 1 MiB blocks (files of any size)."""
    h = hashlib.blake2b(digest_size=32) if algorithm == "blake2b" else hashlib.new(algorithm)
    while block := f.read(CHUNK):
        h.update(block)
    return h.hexdigest()


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    with open(path, "rb") as f:
        return stream_digest(f, algorithm)


def to_multihash(sha256_hex: str) -> str:
    """The ``file:checksum`` form (hex multihash) of a sha2-256 digest."""
    return SHA256_PREFIX + sha256_hex


def multihash_sha256(path: str | Path) -> str:
    return to_multihash(file_digest(path, "sha256"))


def matches(path: str | Path, checksum: str) -> bool:
    algorithm, digest = parse_multihash(checksum)
    return file_digest(path, algorithm) == digest
