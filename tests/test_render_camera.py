"""camera_centres: the torch twin of the translation of geometry.invert_rigid."""

import numpy as np
import torch

from worldstereo.cameras import look_at
from worldstereo.geometry import invert_rigid
from worldstereo.render.camera import camera_centres


def test_camera_centres_are_the_c2w_translations():
    eyes = np.array([[1.0, -0.5, -3.0], [0.2, 0.1, 0.0], [-2.0, 0.3, 4.0]])
    c2w = np.stack([look_at(e, np.array([0.0, 0.0, 1.0])) for e in eyes])
    w2c = torch.from_numpy(np.stack([invert_rigid(T) for T in c2w]))
    assert torch.allclose(camera_centres(w2c), torch.from_numpy(eyes), atol=1e-12)  # batched [N, 4, 4]
    assert torch.allclose(camera_centres(w2c[1, :3]), torch.from_numpy(eyes[1]), atol=1e-12)  # one [3, 4]
    # the projection of the centre is the camera origin
    assert torch.allclose(w2c[0, :3, :3] @ camera_centres(w2c[0]) + w2c[0, :3, 3], torch.zeros(3, dtype=torch.float64),
                          atol=1e-12)
