"""Hash grid: matches its slow reference, fits a smooth 3D function; inverse deformation round trip."""

import numpy as np
import torch

from worldstereo.align.deform import ControlGrid
from worldstereo.align.hashgrid import HashDeformField, HashGrid, hashgrid_reference
from worldstereo.align.icp import FrameState
from worldstereo.align.inverse import InverseConfig, fit_inverse
from worldstereo.align.preprocess import FramePoints

ROUND_TRIP_TOL = 1e-3  # p95, fraction of the scene scale


def test_hashgrid_matches_reference():
    enc = HashGrid(levels=4, features=2, log2_table=8, base_res=2, max_res=32)  # dense and hashed levels
    x = torch.rand(40, 3, generator=torch.Generator().manual_seed(0))
    assert np.allclose(enc(x).detach().numpy(), hashgrid_reference(enc, x.numpy()), atol=1e-6)


def test_hashgrid_fits_smooth_function():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    f = lambda p: torch.stack([torch.sin(3 * p[:, 0]) * p[:, 1], torch.cos(2 * p[:, 2]), p[:, 0] * p[:, 2]], 1)  # noqa: E731
    field = HashDeformField(np.zeros(3), np.ones(3), levels=8, features=2, log2_table=12, base_res=4,
                            max_res=32, hidden=32)
    opt = torch.optim.Adam(field.parameters(), lr=2e-2)
    x = torch.rand(2000, 3)
    y = f(x)
    for _ in range(300):
        loss = torch.mean((field(x) - y) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    xt = torch.rand(2000, 3)
    rel = torch.mean((field(xt) - f(xt)) ** 2) / torch.var(f(xt))
    assert rel < 0.05, float(rel)


def test_inverse_round_trip_below_tolerance():
    rng = np.random.default_rng(0)
    x = np.stack([rng.uniform(-1, 1, 5000), rng.uniform(-0.7, 0.7, 5000), rng.uniform(2, 5, 5000)], 1)
    grid = ControlGrid.around(x, 6)
    nodes = grid.node_positions()
    grid.values = (0.05 * nodes * np.sin(nodes[:, [1, 2, 0]])).reshape(grid.values.shape)  # ~5 % warp
    frame = FramePoints(3, x, np.tile([0, 0, -1.0], (5000, 1)), np.zeros((5000, 3)), np.ones(5000),
                        np.zeros((5000, 2), int), np.eye(4), np.eye(3), np.ones((2, 2)), np.zeros((2, 2, 3), np.uint8))
    inv, stats = fit_inverse(frame, FrameState(np.eye(4), grid), InverseConfig(), scale=3.5)
    assert stats.frame == 3 and stats.median <= stats.p95 <= stats.max
    assert stats.p95 < ROUND_TRIP_TOL, stats
