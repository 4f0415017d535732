"""DN → reflectance: ``DN * scale + offset`` (never ``(DN + offset) * scale``), NaN for nodata.

A wrong order or a dropped offset still gives plausible-looking numbers, so the expected values
are worked out by hand from the product guides: Sentinel-2 baseline >= 04.00 (scale 1e-4,
offset -0.1) and Landsat Collection 2 Level-2 SR (scale 2.75e-5, offset -0.2).
"""

from __future__ import annotations

import numpy as np
import pytest

from rgb_assets_tests.reference import to_reflectance


def test_sentinel2_offset_applied_after_scale() -> None:
    dn = np.array([0, 1000, 1500, 11000, 65535], dtype=np.uint16)
    out = to_reflectance(dn, 1e-4, -0.1, 0)
    assert out.dtype == np.float32
    assert np.isnan(out[0])
    # (DN + offset) * scale would give 0.09999 for DN 1000; DN * scale + offset gives 0.
    np.testing.assert_allclose(out[1:], [0.0, 0.05, 1.0, 6.4535], atol=1e-6)


def test_landsat_c2_l2() -> None:
    dn = np.array([[0, 7273], [10909, 43636]], dtype=np.uint16)
    out = to_reflectance(dn, 2.75e-5, -0.2, 0)
    assert out.shape == (2, 2)
    assert np.isnan(out[0, 0])
    np.testing.assert_allclose(out[0, 1], 7273 * 2.75e-5 - 0.2, atol=1e-6)
    np.testing.assert_allclose(out[1], [0.1, 1.0], atol=1e-5)


def test_nodata_is_compared_on_dn_not_reflectance() -> None:
    """DN 1000 maps to reflectance 0 with offset -0.1; that is a dark pixel, not nodata."""
    dn = np.array([0, 1000], dtype=np.uint16)
    out = to_reflectance(dn, 1e-4, -0.1, 0)
    assert np.isnan(out[0]) and out[1] == pytest.approx(0.0, abs=1e-7)


def test_no_nodata_keeps_every_value() -> None:
    dn = np.array([0, 2000], dtype=np.uint16)
    out = to_reflectance(dn, 1e-4, 0.0, None)
    assert not np.isnan(out).any()
    np.testing.assert_allclose(out, [0.0, 0.2], atol=1e-7)


def test_float_input_and_custom_nodata() -> None:
    dn = np.array([-9999.0, 2500.0], dtype=np.float64)
    out = to_reflectance(dn, 1e-4, 0.0, -9999)
    assert out.dtype == np.float32
    assert np.isnan(out[0]) and out[1] == pytest.approx(0.25)


def test_input_not_modified() -> None:
    dn = np.array([0, 5000], dtype=np.uint16)
    to_reflectance(dn, 1e-4, -0.1, 0)
    assert dn.tolist() == [0, 5000]
