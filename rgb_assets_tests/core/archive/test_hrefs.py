"""Asset hrefs are read only from remote URLs and allowed local roots; whole copies must be
rasters of the media type their item claims (issue 13 #1)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rgb_assets.core.archive.hrefs import RefusedAsset, check_raster, confine_href


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "catalog"
    (folder / "scene").mkdir(parents=True)
    (folder / "scene" / "red.tif").write_bytes(b"x")
    return folder


@pytest.mark.parametrize(
    ("href", "reason"),
    [
        ("file:///etc/passwd", "outside the allowed roots"),
        ("/etc/passwd", "outside the allowed roots"),
        ("../../../../../../../../etc/passwd", "relative path"),
        ("/tmp/../etc/passwd", "'..'"),
        ("ftp://example.com/red.tif", "ftp://"),
        ("/vsicurl/http://example.com/red.tif", "GDAL virtual"),
        ("gs://bucket/red.tif", "gs://"),
        ("file://otherhost/etc/passwd", "another host"),
        ("http:///red.tif", "without a host"),
    ],
)
def test_hostile_hrefs_are_refused(root: Path, href: str, reason: str) -> None:
    with pytest.raises(RefusedAsset, match=reason):
        confine_href(href, [str(root)], "red")


def test_dotdot_out_of_the_root_is_refused(root: Path) -> None:
    with pytest.raises(RefusedAsset, match="'..'"):
        confine_href(f"{root}/scene/../../../etc/passwd", [str(root)])


def test_symlink_out_of_the_root_is_refused(root: Path) -> None:
    os.symlink("/etc/passwd", root / "scene" / "blue.tif")
    os.symlink("/etc", root / "scene" / "etc")
    for href in (root / "scene" / "blue.tif", root / "scene" / "etc" / "passwd"):
        with pytest.raises(RefusedAsset, match="outside the allowed roots"):
            confine_href(str(href), [str(root)])


def test_files_inside_a_root_and_remote_urls_are_read(root: Path, tmp_path: Path) -> None:
    inside = root / "scene" / "red.tif"
    assert confine_href(str(inside), [str(root)]) == str(inside.resolve())
    assert confine_href(inside.as_uri(), [str(root)]) == str(inside.resolve())
    # A symlink that stays inside the root is fine; a second root allows another folder.
    os.symlink(inside, root / "scene" / "alias.tif")
    assert confine_href(str(root / "scene" / "alias.tif"), [str(root)]) == str(inside.resolve())
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "g.tif").write_bytes(b"x")
    assert confine_href(str(other / "g.tif"), [str(root), str(other)]) == str(other / "g.tif")
    # A root's sibling with the same prefix is not inside it.
    twin = tmp_path / "catalog-twin"
    twin.mkdir()
    (twin / "r.tif").write_bytes(b"x")
    with pytest.raises(RefusedAsset):
        confine_href(str(twin / "r.tif"), [str(root)])
    for url in ("https://example.com/a.tif?sig=1", "http://h/a.tif", "s3://bucket/key.tif"):
        assert confine_href(url, []) == url


def test_no_root_configured_refuses_every_local_file(root: Path) -> None:
    with pytest.raises(RefusedAsset, match="none configured"):
        confine_href(str(root / "scene" / "red.tif"), [])


def test_copied_bytes_must_be_the_claimed_raster(sample_dir: Path, tmp_path: Path) -> None:
    cog = next(sample_dir.rglob("red.tif"))
    assert check_raster(cog, "image/tiff; application=geotiff", "red", str(cog)) == "GTiff"
    passwd = tmp_path / "red.bin"
    shutil.copyfile("/etc/passwd", passwd)
    with pytest.raises(RefusedAsset, match="not a raster"):
        check_raster(passwd, "image/tiff; application=geotiff", "red", "/etc/passwd")
    with pytest.raises(RefusedAsset, match="claims image/jp2 but the bytes are GTiff"):
        check_raster(cog, "image/jp2", "red", str(cog))
