"""utils.view with viser installed: the scene gets every Gaussian, GET / serves the web client."""

import urllib.request

import numpy as np
import torch

from worldstereo.splat.ply import write_splats_ply


def _params(n=6):
    g = torch.Generator().manual_seed(0)
    return {"means": torch.randn(n, 3, generator=g), "log_scales": torch.randn(n, 3, generator=g) - 3,
            "quats": torch.randn(n, 4, generator=g), "opacity_logits": torch.randn(n, generator=g),
            "sh0": torch.randn(n, 1, 3, generator=g), "shN": torch.zeros(n, 3, 3)}


def test_viewer_serves_the_splats(tmp_path):
    from utils import view

    p = _params()
    path = tmp_path / "gs_3dgs" / "splats.ply"
    path.parent.mkdir()
    write_splats_ply(path, p)
    assert view.find_splats(view.SceneDir(tmp_path), "auto") == path
    server, splats = view.start_viewer(path, host="127.0.0.1", port=0)
    try:
        # viser packs each Gaussian into 8 uint32 (0.2 and 1.x): xyz float32, pad, cov float16 ×6, rgba uint8
        buf = splats.buffer
        assert buf.shape == (6, 8)
        np.testing.assert_array_equal(buf[:, 0:3].view(np.float32), p["means"].numpy())
        alpha = buf[:, 7:8].view(np.uint8)[:, 3]
        np.testing.assert_allclose(alpha, torch.sigmoid(p["opacity_logits"]).numpy() * 255, atol=1)
        with urllib.request.urlopen(f"http://127.0.0.1:{server.get_port()}/", timeout=5) as r:
            assert r.status == 200 and "text/html" in r.headers["Content-Type"]
            assert b"<html" in r.read().lower()
    finally:
        server.stop()
