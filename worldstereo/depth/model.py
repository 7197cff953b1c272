"""Depth from a local Hugging Face model (transformers AutoModelForDepthEstimation); never downloads."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from worldstereo.errors import InputError


def predict_depth(model_dir: Path, rgb: np.ndarray, output: Literal["disparity", "depth", "metric"],
                  median_depth_m: float) -> np.ndarray:
    """Depth [H, W] float32 metres for an RGB uint8 image.

    disparity (Depth Anything, DPT): depth = 1 / disparity, then scaled so its median is
    `median_depth_m`; depth: scaled to that median; metric: used as is.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise InputError(model_dir, "depth model folder not found")
    try:
        import torch
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation
    except ImportError:
        raise InputError(model_dir, "depth models need transformers: pip install -e '.[depth]'")
    try:
        processor = AutoImageProcessor.from_pretrained(model_dir, local_files_only=True)
        model = AutoModelForDepthEstimation.from_pretrained(model_dir, local_files_only=True).eval()
    except Exception as e:  # truncated safetensors, bad config, ...: the folder's problem, said in one line
        raise InputError(model_dir, f"not a loadable depth model ({(str(e).splitlines() or [e.__class__.__name__])[0][:160]})")
    inputs = processor(images=rgb, return_tensors="pt")
    with torch.no_grad():
        pred = model(**inputs).predicted_depth  # [1, h, w]
    pred = torch.nn.functional.interpolate(pred[:, None].float(), size=rgb.shape[:2], mode="bilinear",
                                           align_corners=False)[0, 0].numpy().astype(np.float64)
    if output == "metric":
        depth = pred
    else:
        if output == "disparity":
            pred = pred - pred.min() + 1e-3 * (pred.max() - pred.min() + 1e-12)  # shift-invariant disparity
            depth = 1.0 / pred
        else:
            depth = pred - min(pred.min(), 0.0) + 1e-6
        depth = depth * (median_depth_m / np.median(depth))
    if not np.all(np.isfinite(depth)) or (depth <= 0).any():
        raise InputError(model_dir, "depth model produced non-finite or non-positive depth")
    return depth.astype(np.float32)
