"""Multihash checksums (STAC file:checksum): parsing, digests and verification, known answers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rgb_assets.core.storage import checksums

SHA256_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
BLAKE2B_256_ABC = "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319"
MD5_ABC = "900150983cd24fb0d6963f7d28e17f72"


@pytest.fixture
def abc(tmp_path: Path) -> Path:
    path = tmp_path / "abc.txt"
    path.write_bytes(b"abc")
    return path


def test_known_digests(abc: Path):
    assert checksums.file_digest(abc) == SHA256_ABC
    assert checksums.file_digest(abc, "blake2b") == BLAKE2B_256_ABC
    assert checksums.file_digest(abc, "md5") == MD5_ABC
    assert checksums.multihash_sha256(abc) == "1220" + SHA256_ABC
    assert checksums.to_multihash(SHA256_ABC) == "1220" + SHA256_ABC


def test_stream_digest_reads_past_one_block(tmp_path: Path):
    """Files larger than the 1 MiB read block hash the same as hashlib over the whole bytes."""
    data = bytes(range(256)) * (checksums.CHUNK // 256 * 2 + 3)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert checksums.file_digest(path) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1220" + SHA256_ABC, ("sha256", SHA256_ABC)),
        ("a0e40220" + BLAKE2B_256_ABC, ("blake2b", BLAKE2B_256_ABC)),  # 0xb220 as a varint
        ("d50110" + MD5_ABC, ("md5", MD5_ABC)),
        ("1114" + "00" * 20, ("sha1", "00" * 20)),
    ],
)
def test_parse_multihash(text: str, expected: tuple[str, str]):
    assert checksums.parse_multihash(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",  # nothing
        "zz20",  # not hex
        "12",  # code without a length
        "a0",  # varint cut short
        "1220abcd",  # digest shorter than its declared length
        "1620" + SHA256_ABC,  # sha3-256: not supported
    ],
)
def test_parse_multihash_refuses_bad_input(text: str):
    with pytest.raises(ValueError):
        checksums.parse_multihash(text)


def test_matches(abc: Path, tmp_path: Path):
    other = tmp_path / "abd.txt"
    other.write_bytes(b"abd")
    assert checksums.matches(abc, "1220" + SHA256_ABC)
    assert checksums.matches(abc, "a0e40220" + BLAKE2B_256_ABC)
    assert not checksums.matches(other, "1220" + SHA256_ABC)
    assert not checksums.matches(other, "a0e40220" + BLAKE2B_256_ABC)
    with pytest.raises(ValueError):
        checksums.matches(abc, "not a multihash")
