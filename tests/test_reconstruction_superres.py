"""optimize_textures(super_resolution=True, sr_model_dir=...): our RRDBNet loads Real-ESRGAN's
checkpoint layout (written here with tiny random weights; the key list is built from the public
layout, not from our module)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldstereo.errors import InputError
from worldstereo.reconstruction.superres import RRDBNet, load_sr_model, upscale_image


def release_layout(feat: int, grow: int, blocks: int, in_ch: int = 3) -> dict[str, tuple[int, ...]]:
    """Key → shape of Real-ESRGAN's RRDBNet checkpoints (RealESRGAN_x4plus.pth: 64, 32, 23, in 3)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cin: int, cout: int) -> None:
        shapes[f"{name}.weight"] = (cout, cin, 3, 3)
        shapes[f"{name}.bias"] = (cout,)

    conv("conv_first", in_ch, feat)
    for b in range(blocks):
        for r in (1, 2, 3):
            for k in range(1, 6):
                conv(f"body.{b}.rdb{r}.conv{k}", feat + (k - 1) * grow, grow if k < 5 else feat)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        conv(name, feat, feat)
    conv("conv_last", feat, 3)
    return shapes


def write_checkpoint(folder, feat=8, grow=4, blocks=2, in_ch=3, name="RealESRGAN_x4plus.pth", drop=None):
    g = torch.Generator().manual_seed(0)
    state = {k: 0.05 * torch.randn(s, generator=g) for k, s in release_layout(feat, grow, blocks, in_ch).items()}
    state["conv_last.bias"] += 0.5  # outputs around mid-grey, not clamped at 0
    if drop:
        state.pop(drop)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"params_ema": state}, folder / name)
    return state


def test_full_size_module_has_the_x4plus_layout():
    with torch.device("meta"):
        model = RRDBNet()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == release_layout(64, 32, 23)
    assert len(ours) == 702 and sum(np.prod(s) for s in ours.values()) == 16_697_987  # RealESRGAN_x4plus


def test_tiny_checkpoint_loads_strictly_and_upscales_x4(tmp_path):
    state = write_checkpoint(tmp_path / "sr")
    model = load_sr_model(tmp_path / "sr")
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert missing == [] and unexpected == []
    assert model.scale == 4 and model.source == "RealESRGAN_x4plus.pth"
    img = np.random.default_rng(0).integers(0, 256, (20, 28, 3), dtype=np.uint8)
    out = upscale_image(model, img)
    assert out.shape == (80, 112, 3) and out.dtype == np.uint8 and out.std() > 0


def test_x2_layout_unshuffles_and_upscales_x2(tmp_path):
    write_checkpoint(tmp_path / "sr", in_ch=12, name="RealESRGAN_x2plus.pth")
    model = load_sr_model(tmp_path / "sr")
    assert model.scale == 2
    img = np.random.default_rng(1).integers(0, 256, (15, 22, 3), dtype=np.uint8)  # odd: padded, then cropped
    assert upscale_image(model, img).shape == (30, 44, 3)


def test_tiles_with_enough_context_match_one_pass(tmp_path):
    """Two blocks see ±33 low-res pixels; with 40 px of context the tiled output equals one pass."""
    write_checkpoint(tmp_path / "sr")
    model = load_sr_model(tmp_path / "sr")
    img = np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    whole = upscale_image(model, img, tile=64, pad=0)
    tiled = upscale_image(model, img, tile=12, pad=40)
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


def test_bad_model_folders_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="no \\*.pth checkpoint in sr_model_dir"):
        (tmp_path / "empty").mkdir()
        load_sr_model(tmp_path / "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "model.pth").write_text("not a checkpoint")
    with pytest.raises(InputError, match=r"model.pth: unreadable checkpoint \(UnpicklingError\)$"):
        load_sr_model(tmp_path / "junk")
    write_checkpoint(tmp_path / "broken", drop="conv_hr.bias")
    with pytest.raises(InputError, match=r"checkpoint does not match RRDBNet: missing conv_hr.bias$"):
        load_sr_model(tmp_path / "broken")


def _textured_square():
    from worldstereo.reconstruction.fusion import vertex_normals
    from worldstereo.reconstruction.types import Mesh, PointCloud, ReconstructedScene

    V = np.array([[0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1.0]])
    F = np.array([[0, 2, 1], [0, 3, 2]])
    mesh = Mesh(V, F, vertex_normals(V, F), uvs=np.array([[0, 0], [1, 0], [1, 1], [0, 1.0]]))
    rng = np.random.default_rng(3)
    tex = {"albedo": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
           "normal": np.full((32, 32, 3), [128, 128, 255], np.uint8), "roughness": np.full((32, 32), 230, np.uint8)}
    cloud = PointCloud(V, np.zeros((4, 3), np.uint8), mesh.normals)
    return ReconstructedScene(mesh, cloud, tex, [], {})


def test_optimize_textures_with_and_without_a_model_folder(tmp_path):
    from worldstereo.reconstruction import optimize_textures

    write_checkpoint(tmp_path / "sr")
    scene = _textured_square()
    o = optimize_textures(scene, super_resolution=True, seam_blending=False, sr_model_dir=tmp_path / "sr")
    rep = o.metadata["texture_optimization"]["super_resolution"]
    assert rep["method"] == "rrdbnet" and rep["model"].startswith("RealESRGAN_x4plus.pth (×4")
    assert o.textures["albedo"].shape == (64, 64, 3) and o.textures["normal"].shape == (64, 64, 3)
    plain = optimize_textures(scene, super_resolution=True, seam_blending=False)
    rep = plain.metadata["texture_optimization"]["super_resolution"]
    assert rep["method"] == "lanczos4" and rep["model"].startswith("none (no sr_model_dir given")
    assert not np.array_equal(plain.textures["albedo"], o.textures["albedo"])
