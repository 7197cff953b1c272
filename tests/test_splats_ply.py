"""splats.ply: INRIA field names and order, channel-major f_rest, round trip through plyfile."""

import numpy as np
import torch
from plyfile import PlyData

from worldstereo.splat.model import GaussianModel
from worldstereo.splat.ply import read_splats_ply, splat_field_names, write_splats_ply


def _params(n=7, degree=3):
    g = torch.Generator().manual_seed(0)
    K = (degree + 1) ** 2
    return {"means": torch.randn(n, 3, generator=g), "log_scales": torch.randn(n, 3, generator=g),
            "quats": torch.randn(n, 4, generator=g), "opacity_logits": torch.randn(n, generator=g),
            "sh0": torch.randn(n, 1, 3, generator=g), "shN": torch.randn(n, K - 1, 3, generator=g)}


def test_inria_field_order_and_names():
    names = splat_field_names(3)
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[9:54] == [f"f_rest_{i}" for i in range(45)]
    assert names[54:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


def test_round_trip_with_plyfile(tmp_path):
    p = _params()
    path = tmp_path / "splats.ply"
    write_splats_ply(path, p)
    ply = PlyData.read(str(path))
    v = ply["vertex"]
    assert [prop.name for prop in v.properties] == splat_field_names(3)
    assert all(v[name].dtype == np.float32 for name in splat_field_names(3))
    np.testing.assert_allclose(np.stack([v["x"], v["y"], v["z"]], 1), p["means"].numpy())
    np.testing.assert_allclose(v["opacity"], p["opacity_logits"].numpy())  # logit, as INRIA
    np.testing.assert_allclose(np.stack([v[f"scale_{i}"] for i in range(3)], 1), p["log_scales"].numpy())
    np.testing.assert_allclose(np.stack([v[f"rot_{i}"] for i in range(4)], 1), p["quats"].numpy())  # w x y z
    # channel-major: f_rest_{c·15 + k} = shN[:, k, c]
    for c in range(3):
        for k in range(15):
            np.testing.assert_allclose(v[f"f_rest_{c * 15 + k}"], p["shN"][:, k, c].numpy())
    back = read_splats_ply(path)
    for k, t in p.items():
        torch.testing.assert_close(back[k], t)


def test_model_parameters_round_trip(tmp_path):
    xyz = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    model = GaussianModel.from_points(xyz, np.full_like(xyz, 0.3), sh_degree=1)
    write_splats_ply(tmp_path / "s.ply", model.raw())
    back = read_splats_ply(tmp_path / "s.ply")
    assert back["shN"].shape == (50, 3, 3)
    for k, t in model.raw().items():
        torch.testing.assert_close(back[k], t)


def test_viewer_payload_and_missing_viser_message(tmp_path, monkeypatch, capsys):
    import sys

    import pytest

    from utils import view

    p = _params(5, degree=1)
    s = view.splats_for_viewer(p)
    assert s["covariances"].shape == (5, 3, 3) and s["opacities"].shape == (5, 1)
    assert torch.allclose(s["covariances"], s["covariances"].transpose(1, 2), atol=1e-5)
    monkeypatch.setitem(sys.modules, "viser", None)  # import viser → ImportError
    with pytest.raises(SystemExit) as e:
        view.cli_entry(view.main)(view.ViewConfig(scene=tmp_path))
    assert e.value.code == 2 and "pip install" in capsys.readouterr().err
