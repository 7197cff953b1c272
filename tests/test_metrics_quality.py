"""No-reference quality: exact synthetic frames score ~1; corrupted depth lowers consistency."""

import numpy as np

from worldstereo.io.results import FrameResults
from worldstereo.metrics.quality import frame_pairs, score_quality
from worldstereo.bench.builders import make_scene


def _frames(n=5):
    scene = make_scene("room", 2)
    cams = scene.path("orbit", n, 128, 96)
    imgs, depths = zip(*[scene.render(c) for c in cams])
    depth = np.where(np.isfinite(np.stack(depths)), np.stack(depths), 0).astype(np.float32)
    return FrameResults(depth, np.ones_like(depth), np.stack([c.w2c[:3] for c in cams]).astype(np.float32),
                        np.stack([c.K for c in cams]).astype(np.float32), np.stack(imgs))


def test_exact_frames_are_consistent():
    q = score_quality(_frames(), stride=1)
    assert q.geometric_consistency > 0.95 and q.multiview_consistency > 0.93 and q.completeness > 0.95
    assert q.n_pairs == len(frame_pairs(5))


def test_corrupted_depth_lowers_geometric_consistency():
    r = _frames()
    good = score_quality(r, stride=1).geometric_consistency
    r.depth[2] *= 0.8  # one frame 20 % too close
    bad = score_quality(r, stride=1)
    assert bad.geometric_consistency < good - 0.1
    assert 0 <= bad.completeness <= 1 and 0 <= bad.multiview_consistency <= 1
