"""Depth from a local Hugging Face model (transformers AutoModelForDepthEstimation); never downloads.

The one wrapper for every caller, so the same model folder gives the same depth everywhere: the
input view of run_pipeline.py (`predict_depth`) and the frames of an outside video in
reconstruct.py (`DepthModel.depth` per frame, through depth/video.py).

>>> model = DepthModel("~/models/depth-anything-small")
>>> depth_m = model.depth(rgb, "disparity", median_depth_m=2.5)   # [H, W] float32
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from worldstereo.errors import InputError

DepthOutput = Literal["disparity", "depth", "metric"]


class DepthModel:
    """A local depth model folder, loaded once (one-line InputError when it is missing or broken)."""

    def __init__(self, model_dir: Path | str):
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise InputError(self.model_dir, "depth model folder not found")
        try:
            from transformers import AutoImageProcessor, AutoModelForDepthEstimation
        except ImportError:
            raise InputError(self.model_dir, "depth models need transformers: pip install -e '.[depth]'")
        try:
            self.processor = AutoImageProcessor.from_pretrained(self.model_dir, local_files_only=True)
            self.model = AutoModelForDepthEstimation.from_pretrained(self.model_dir, local_files_only=True).eval()
        except Exception as e:  # truncated safetensors, bad config, ...: the folder's problem, said in one line
            first = (str(e).splitlines() or [e.__class__.__name__])[0][:160]
            raise InputError(self.model_dir, f"not a loadable depth model ({first})")

    def raw(self, rgb: np.ndarray) -> np.ndarray:
        """The model's output [H, W] float64 for an RGB uint8 image [H, W, 3], bilinearly resized to it."""
        import torch

        inputs = self.processor(images=rgb, return_tensors="pt")
        with torch.no_grad():
            pred = self.model(**inputs).predicted_depth  # [1, h, w]
        pred = torch.nn.functional.interpolate(pred[:, None].float(), size=rgb.shape[:2], mode="bilinear",
                                               align_corners=False)
        return pred[0, 0].numpy().astype(np.float64)

    def depth(self, rgb: np.ndarray, output: DepthOutput, median_depth_m: float) -> np.ndarray:
        """Depth [H, W] float32 metres for an RGB uint8 image (see `to_depth`)."""
        return to_depth(self.raw(rgb), output, median_depth_m, self.model_dir)


def to_depth(pred: np.ndarray, output: DepthOutput, median_depth_m: float, model_dir: Path | None = None) -> np.ndarray:
    """A depth model's output [H, W] → depth [H, W] float32.

    disparity (Depth Anything, DPT): shift-invariant, so it is shifted to start just above 0
    (1e-3 of its range), inverted, then scaled so the median depth is `median_depth_m`;
    depth: relative depth, shifted to be positive, scaled to that median; metric: metres, used as is.
    Non-finite or non-positive depth is an InputError naming the model.
    """
    if output == "metric":
        depth = pred
    else:
        if output == "disparity":
            pred = pred - pred.min() + 1e-3 * (pred.max() - pred.min() + 1e-12)
            depth = 1.0 / pred
        else:
            depth = pred - min(pred.min(), 0.0) + 1e-6
        depth = depth * (median_depth_m / np.median(depth))
    if not np.all(np.isfinite(depth)) or (depth <= 0).any():
        raise InputError(model_dir, "depth model produced non-finite or non-positive depth")
    return depth.astype(np.float32)


def predict_depth(model_dir: Path, rgb: np.ndarray, output: DepthOutput, median_depth_m: float) -> np.ndarray:
    """Depth [H, W] float32 metres for an RGB uint8 image with the model in `model_dir` (see `to_depth`)."""
    return DepthModel(model_dir).depth(rgb, output, median_depth_m)
