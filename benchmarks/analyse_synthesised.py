"""Where the geometric generator's wrong synthesised points come from (issue 12), against synthetic ground truth.

For every scene of a benchmark run (eval_benchmark.py output) this breaks down

  * the cache's generated points (step > 0) by confidence class, by whether the input view saw
    their direction as unknown (sky), and by distance to the GT surface (correct = within τ);
  * the generated frames' pixels (results.npz, k ≥ 1) by confidence class, depth-edge proximity
    and GT hit (sky), each pixel correct when |depth − GT depth| ≤ τ.

    python -m benchmarks.analyse_synthesised --manifest /tmp/cpugen/synth/manifest.json --out /tmp/cpugen/res
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from worldstereo.bench.config import ScoreConfig
from worldstereo.bench.manifest import read_manifest
from worldstereo.bench.scoring import ground_truth, results_cameras
from worldstereo.cameras import Camera
from worldstereo.geometry import depth_discontinuities, project_points
from worldstereo.io.results import load_results
from worldstereo.memory.cache import PointCache

CLASSES = {"plane 0.6": 0.6, "interp 0.35": 0.35, "extrap 0.1": 0.1}


def conf_class(conf: np.ndarray) -> np.ndarray:
    """Label per value: the generator's exact class confidences, 'fused' for sums, 'input' for ≥ 1."""
    lab = np.full(conf.shape, "fused", object)
    for name, v in CLASSES.items():
        lab[np.isclose(conf, v, atol=1e-6)] = name
    lab[conf >= 1.0] = "input"
    lab[conf <= 0] = "zero"
    return lab


def input_unknown(xyz: np.ndarray, cam: Camera, depth_in: np.ndarray) -> np.ndarray:
    """Points seen by the input camera through a pixel without depth (sky, unknown)."""
    uv, z = project_points(xyz.astype(np.float64), cam.K, cam.w2c)
    u, v = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
    inside = (z > 0) & (u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height)
    out = np.zeros(len(xyz), bool)
    d = depth_in[v[inside], u[inside]]
    out[inside] = ~(np.isfinite(d) & (d > 0))
    return out


def table(label: np.ndarray, ok: np.ndarray, title: str) -> None:
    print(f"  {title}: n={len(ok)} precision={ok.mean() if len(ok) else float('nan'):.3f}")
    for name in sorted(set(label.tolist())):
        m = label == name
        print(f"    {name:<22} share={m.mean():.3f} precision={ok[m].mean():.3f} wrong-share={(m & ~ok).sum() / max(1, (~ok).sum()):.3f}")


def analyse_scene(entry, cfg: ScoreConfig) -> None:
    scene = entry.scene
    res = load_results(scene.results_npz)
    gt = ground_truth(entry, res, cfg)
    tree = cKDTree(gt.xyz)
    cache = PointCache.load(scene.cache_ply)
    meta = scene.load()
    W, H = meta.working_size
    cam_in = Camera(np.asarray(meta.K), np.eye(4), W, H)
    depth_in = np.load(scene.input_depth)
    syn = cache.select(cache.step > 0)
    dist = tree.query(syn.xyz.astype(np.float64))[0]
    ok = dist <= gt.tau
    print(f"{entry.name}: τ={gt.tau:.4f} synthesised cache points {len(syn)}")
    lab = conf_class(syn.conf)
    table(lab, ok, "cache points by confidence")
    unk = input_unknown(syn.xyz, cam_in, depth_in)
    table(np.where(unk, "input-unknown dir", "input-known dir"), ok, "cache points by input pixel")
    table(np.array([f"step {s}" for s in syn.step], object), ok, "cache points by step")
    source_pixels(syn, ok, res, meta)
    frame_pixels(entry, res, gt.tau)


def source_pixels(syn: PointCache, ok: np.ndarray, res, meta) -> None:
    """Class of the frame pixel each synthesised point came from (its step / frame), and whether that
    pixel sits next to a depth edge of the frame."""
    n_frames = (len(res) - 1) // max(1, len(meta.trajectory_order))
    k = 1 + (syn.step.astype(int) - 1) * n_frames + syn.frame.astype(int)
    cams = results_cameras(res)
    lab = np.full(len(syn), "outside", object)
    edge_lab = np.full(len(syn), "outside", object)
    for kk in np.unique(k):
        m = np.nonzero(k == kk)[0]
        uv, z = project_points(syn.xyz[m].astype(np.float64), cams[kk].K, cams[kk].w2c)
        u, v = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
        H, W = res.depth.shape[1:]
        inside = (z > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
        mi = m[inside]
        lab[mi] = conf_class(res.conf[kk][v[inside], u[inside]])
        edge = depth_discontinuities(res.depth[kk].astype(np.float64), 0.04)
        edge_lab[mi] = np.where(edge[v[inside], u[inside]], "edge", "smooth")
    table(lab, ok, "cache points by source pixel class")
    table(edge_lab, ok, "cache points by source pixel depth edge")


def frame_pixels(entry, res, tau: float) -> None:
    cams = results_cameras(res)
    labs, oks, edges, skies = [], [], [], []
    for k in range(1, len(res)):
        gd = entry_scene(entry).render_depth(cams[k])
        d = res.depth[k].astype(np.float64)
        valid = np.isfinite(d) & (d > 0)
        edge = depth_discontinuities(d, 0.04)
        near_edge = np.zeros_like(edge)
        near_edge[1:-1, 1:-1] = edge[1:-1, 1:-1] | edge[:-2, 1:-1] | edge[2:, 1:-1] | edge[1:-1, :-2] | edge[1:-1, 2:]
        ok = np.isfinite(gd) & (np.abs(d - gd) <= tau)
        labs.append(conf_class(res.conf[k])[valid]); oks.append(ok[valid]); edges.append(near_edge[valid])
        skies.append(~np.isfinite(gd)[valid])
    lab, ok, edge, sky = map(np.concatenate, (labs, oks, edges, skies))
    table(lab, ok, "frame pixels by confidence")
    table(np.where(edge, "near depth edge", "smooth"), ok, "frame pixels by depth edge")
    table(np.where(sky, "GT sky", "GT surface"), ok, "frame pixels by GT hit")


_SCENES: dict = {}


def entry_scene(entry):
    from worldstereo.bench.builders import make_scene

    if entry.name not in _SCENES:
        _SCENES[entry.name] = make_scene(entry.kind, entry.seed)
    return _SCENES[entry.name]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--scenes", nargs="*", default=None)
    a = ap.parse_args()
    cfg = ScoreConfig()
    for e in read_manifest(a.manifest, a.out):
        if a.scenes and e.name not in a.scenes:
            continue
        if e.scene.cache_ply.exists():
            analyse_scene(e, cfg)


if __name__ == "__main__":
    main()
