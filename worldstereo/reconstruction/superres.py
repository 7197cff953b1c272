"""Learned texture super-resolution from a local model folder: our own RRDB network (ESRGAN's
generator, Wang et al. 2018) that loads Real-ESRGAN's released checkpoints as they are.

    model = load_sr_model("models/realesrgan")          # a folder holding e.g. RealESRGAN_x4plus.pth
    big = upscale_image(model, albedo_uint8)             # [H·s, W·s, 3] uint8, s = model.scale

Checkpoint layout (the public Real-ESRGAN release, e.g. RealESRGAN_x4plus.pth / _x2plus.pth): a
torch file {"params_ema": state_dict} (or {"params": ...}) with keys conv_first, body.<i>.rdb<1-3>.
conv<1-5>, conv_body, conv_up1, conv_up2, conv_hr, conv_last (weight + bias each). Widths and depth
are read from the shapes (x4plus: 64 features, 23 blocks, growth 32); the input channels give the
scale (3 → ×4; 12 → ×2 and 48 → ×1 after a pixel unshuffle). Inputs RGB in 0..1. Nothing is
downloaded: the folder must hold the file.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from worldstereo.errors import InputError

SCALE_OF_IN_CHANNELS = {3: 4, 12: 2, 48: 1}


class DenseBlock(nn.Module):
    """Five 3×3 convs, each seeing the input and all earlier outputs; out = x + 0.2 · conv5(...)."""

    def __init__(self, feat: int, grow: int):
        super().__init__()
        for k in range(1, 5):
            setattr(self, f"conv{k}", nn.Conv2d(feat + (k - 1) * grow, grow, 3, padding=1))
        self.conv5 = nn.Conv2d(feat + 4 * grow, feat, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seen = [x]
        for k in range(1, 5):
            seen.append(F.leaky_relu(getattr(self, f"conv{k}")(torch.cat(seen, 1)), 0.2))
        return x + 0.2 * self.conv5(torch.cat(seen, 1))


class ResidualInResidual(nn.Module):
    """Three dense blocks in a chain with a 0.2-scaled skip around them (rdb1..rdb3)."""

    def __init__(self, feat: int, grow: int):
        super().__init__()
        self.rdb1, self.rdb2, self.rdb3 = DenseBlock(feat, grow), DenseBlock(feat, grow), DenseBlock(feat, grow)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """[B, 3, H, W] in 0..1 → [B, 3, H·scale, W·scale]: (pixel unshuffle for ×2 / ×1) → conv_first →
    `blocks` residual-in-residual blocks → conv_body (+ skip) → two (nearest ×2, conv, leaky ReLU)
    → conv_hr, leaky ReLU → conv_last."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, feat: int = 64, blocks: int = 23, grow: int = 32):
        super().__init__()
        if in_ch not in SCALE_OF_IN_CHANNELS:
            raise ValueError(f"conv_first input channels {in_ch}: expected one of {sorted(SCALE_OF_IN_CHANNELS)}")
        self.scale = SCALE_OF_IN_CHANNELS[in_ch]
        self.conv_first = nn.Conv2d(in_ch, feat, 3, padding=1)
        self.body = nn.Sequential(*(ResidualInResidual(feat, grow) for _ in range(blocks)))
        self.conv_body = nn.Conv2d(feat, feat, 3, padding=1)
        self.conv_up1 = nn.Conv2d(feat, feat, 3, padding=1)
        self.conv_up2 = nn.Conv2d(feat, feat, 3, padding=1)
        self.conv_hr = nn.Conv2d(feat, feat, 3, padding=1)
        self.conv_last = nn.Conv2d(feat, out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        unshuffle = {4: 1, 2: 2, 1: 4}[self.scale]
        f = self.conv_first(F.pixel_unshuffle(x, unshuffle) if unshuffle > 1 else x)
        f = f + self.conv_body(self.body(f))
        for conv in (self.conv_up1, self.conv_up2):
            f = F.leaky_relu(conv(F.interpolate(f, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(f), 0.2))


def shapes_of(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """Constructor arguments read from a state dict's shapes."""
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.", k))}
    return {"in_ch": state["conv_first.weight"].shape[1], "out_ch": state["conv_last.weight"].shape[0],
            "feat": state["conv_first.weight"].shape[0], "blocks": len(blocks),
            "grow": state["body.0.rdb1.conv1.weight"].shape[0] if blocks else 32}


def layout_mismatch(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> str:
    """'' when the keys and shapes agree, else the first few missing / unexpected / mis-shaped keys."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shaped = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    parts = [f"{what} {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''}"
             for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shaped)) if keys]
    return "; ".join(parts)


def checkpoint_file(folder: Path) -> Path:
    """The one *.pth / *.pt file in the folder (RealESRGAN_x4plus.pth preferred when several)."""
    if not folder.is_dir():
        raise InputError(folder, "sr_model_dir is not a folder")
    files = sorted(list(folder.glob("*.pth")) + list(folder.glob("*.pt")))
    if not files:
        raise InputError(folder, "no *.pth checkpoint in sr_model_dir (e.g. RealESRGAN_x4plus.pth from the "
                                 "Real-ESRGAN release; nothing is downloaded)")
    preferred = [f for f in files if f.name == "RealESRGAN_x4plus.pth"]
    return (preferred or files)[0]


def load_sr_model(folder: str | Path) -> RRDBNet:
    """Our RRDBNet with the folder's checkpoint loaded strictly (every key used, none missing)."""
    path = checkpoint_file(Path(folder))
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as e:  # truncated or foreign
        raise InputError(path, f"unreadable checkpoint ({e.__class__.__name__})")
    state = blob.get("params_ema", blob.get("params", blob)) if isinstance(blob, dict) else None
    if not isinstance(state, dict) or "conv_first.weight" not in state:
        raise InputError(path, "not an RRDBNet checkpoint (no params_ema / params with conv_first.weight)")
    try:
        model = RRDBNet(**shapes_of(state))
    except (KeyError, ValueError) as e:
        raise InputError(path, f"checkpoint does not match RRDBNet: {e}")
    problem = layout_mismatch(model.state_dict(), state)
    if problem:
        raise InputError(path, f"checkpoint does not match RRDBNet: {problem}")
    model.load_state_dict(state, strict=True)
    model.source = path.name  # type: ignore[attr-defined]
    return model.eval()


def upscale_image(model: RRDBNet, img: np.ndarray, tile: int = 128, pad: int = 8) -> np.ndarray:
    """img [H, W, 3] uint8 → [H·s, W·s, 3] uint8 through the model, in tiles of `tile` px with `pad`
    px of context on each side (cropped from the output), so memory stays bounded at 2048² and more."""
    s = model.scale
    mult = {4: 1, 2: 2, 1: 4}[s]  # the unshuffle needs sides divisible by this: pad, crop after
    H, W = img.shape[:2]
    Hp, Wp = -(-H // mult) * mult, -(-W // mult) * mult
    padded = np.pad(img, ((0, Hp - H), (0, Wp - W), (0, 0)), mode="edge")
    x = torch.from_numpy(padded).float().div(255).permute(2, 0, 1)[None]
    out = torch.zeros(1, 3, Hp * s, Wp * s)
    tile, pad = max(mult, tile // mult * mult), -(-pad // mult) * mult
    with torch.no_grad():
        for y0 in range(0, Hp, tile):
            for x0 in range(0, Wp, tile):
                y1, x1 = min(y0 + tile, Hp), min(x0 + tile, Wp)
                ya, xa = max(0, y0 - pad), max(0, x0 - pad)
                yb, xb = min(Hp, y1 + pad), min(Wp, x1 + pad)
                y = model(x[:, :, ya:yb, xa:xb])
                out[:, :, y0 * s:y1 * s, x0 * s:x1 * s] = y[:, :, (y0 - ya) * s:(y1 - ya) * s, (x0 - xa) * s:(x1 - xa) * s]
    return (out[0, :, :H * s, :W * s].permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).byte().numpy()
