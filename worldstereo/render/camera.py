"""Torch pose helpers for the renderers and the trainer (the numpy ones live in worldstereo.geometry)."""

from __future__ import annotations

from torch import Tensor


def camera_centres(w2c: Tensor) -> Tensor:
    """World positions c = −Rᵀ t [..., 3] of the cameras of rigid w2c [..., 4, 4] (or [..., 3, 4]).

    The translation column of `worldstereo.geometry.invert_rigid(w2c)` (the c2w) without a general
    matrix inverse; autograd flows through it.

    >>> camera_centres(torch.eye(4))              # tensor([0., 0., 0.])
    >>> camera_centres(views_w2c).shape           # [N, 3] for views_w2c [N, 4, 4]
    """
    R, t = w2c[..., :3, :3], w2c[..., :3, 3]
    return -(R.mT @ t[..., None])[..., 0]
