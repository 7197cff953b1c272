"""PSNR / SSIM equal scikit-image; LPIPS is reported unavailable, never 0."""

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from worldstereo.metrics.images import lpips_or_none, lpips_status, psnr, ssim


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    a = (rng.uniform(size=(40, 52, 3)) * 255).astype(np.uint8)
    a = np.clip(np.cumsum(a.astype(int), axis=1) // 20, 0, 255).astype(np.uint8)  # some structure
    b = np.clip(a.astype(int) + rng.integers(-20, 21, size=a.shape), 0, 255).astype(np.uint8)
    return a, b


def test_psnr_equals_skimage(pair):
    a, b = pair
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), rel=1e-12)
    af, bf = a / 255.0, b / 255.0
    assert psnr(af, bf) == pytest.approx(peak_signal_noise_ratio(af, bf, data_range=1.0), rel=1e-12)
    assert psnr(a, a) == float("inf")


def test_ssim_equals_skimage(pair):
    a, b = pair
    ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                data_range=255, channel_axis=-1)
    assert ssim(a, b) == pytest.approx(ref, rel=1e-9)
    ref_g = structural_similarity(a[..., 0], b[..., 0], gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False, data_range=255)
    assert ssim(a[..., 0], b[..., 0]) == pytest.approx(ref_g, rel=1e-9)
    assert ssim(a, a) == pytest.approx(1.0)


def test_lpips_unavailable_is_none(pair):
    if lpips_status() is None:
        assert lpips_or_none(*pair) >= 0
    else:
        assert lpips_or_none(*pair) is None
