"""Run and score every scene of a manifest, or score one finished scene; print and save the table.

    python eval_benchmark.py --manifest bench/synth/manifest.json
    python eval_benchmark.py --manifest m.json --launcher slurm --partition gpu --gpus-per-job 1
    python eval_benchmark.py --scene scenes/my --gt-points gt.ply

One job per scene (worldstereo.launch); each writes <out>/scores/<scene>.json, so a rerun only
runs unfinished scenes. The table (markdown on screen, benchmark.json / .csv in <out>) has one
row per scene and method, the mean rows last, and the command and versions that produced it.
"""

from __future__ import annotations

import csv
import json
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import tyro

from configs.eval import EvalConfig
from worldstereo import __version__
from worldstereo.console import info
from worldstereo.errors import InputError, cli_entry
from worldstereo.io.atomic import atomic_write_text
from worldstereo.launch import Job, run_jobs
from worldstereo.scene import config_hash

REPO = Path(__file__).resolve().parent
COLUMNS = ["scene", "method", "status", "fscore", "precision", "recall", "accuracy", "completeness", "auc",
           "tau", "psnr", "ssim", "lpips", "depth_absrel", "q_completeness", "q_geometric", "q_multiview",
           "points", "note"]


# --------------------------------------------------------------------------- entries


def load_entries(cfg: EvalConfig) -> list[dict]:
    """Manifest entries with absolute paths, or the single --scene entry."""
    if cfg.scene is not None:
        if cfg.gt_points is None:
            raise InputError(cfg.scene, "--scene needs --gt-points (a PLY in the scene's world frame)")
        if not cfg.scene.is_dir():
            raise InputError(cfg.scene, "scene folder not found")
        if not cfg.gt_points.exists():
            raise InputError(cfg.gt_points, "ground-truth point cloud not found")
        return [{"name": cfg.scene.name, "scene_dir": str(cfg.scene.resolve()), "gt_points": str(cfg.gt_points.resolve()),
                 "run": False}]
    if cfg.manifest is None:
        raise InputError(None, "give --manifest M.json, or --scene DIR --gt-points GT.ply")
    try:
        data = json.loads(cfg.manifest.read_text())
    except FileNotFoundError:
        raise InputError(cfg.manifest, "manifest not found")
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(cfg.manifest, f"not a readable JSON manifest ({e.__class__.__name__})")
    scenes = data.get("scenes") if isinstance(data, dict) else data
    if not isinstance(scenes, list) or not scenes:
        raise InputError(cfg.manifest, "manifest has no 'scenes' list")
    base = cfg.manifest.resolve().parent
    entries = []
    for i, e in enumerate(scenes):
        if not isinstance(e, dict) or "image" not in e:
            raise InputError(cfg.manifest, f"scenes[{i}] needs at least an 'image'")
        e = dict(e)
        e.setdefault("name", Path(e["image"]).stem)
        for k in ("image", "depth", "gt_points", "scene_dir"):
            if e.get(k):
                e[k] = str((base / e[k]).resolve())
        e.setdefault("scene_dir", str((cfg.out / "scenes" / e["name"]).resolve()))
        e["run"] = True
        entries.append(e)
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise InputError(cfg.manifest, "scene names must be unique")
    return entries


# --------------------------------------------------------------------------- running stages


def _run_stage(cmd: list[str], log: Path, timeout_min: int) -> str | None:
    """Run a stage script; None on success, else a one-line reason (its log keeps the rest)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log, "w") as f:
            p = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, timeout=timeout_min * 60)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout_min} min"
    if p.returncode != 0:
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        return f"exit {p.returncode}: {tail[-1][:160] if tail else ''}"
    return None


def run_entry(e: dict, cfg: EvalConfig, logs: Path) -> dict[str, str]:
    """Run the pipeline (and reconstruct.py) for one entry unless outputs exist; returns notes."""
    notes: dict[str, str] = {}
    scene = Path(e["scene_dir"])
    results = scene / "exports" / "npz" / "results.npz"
    if e.get("run") and (cfg.run.rerun or not results.exists()):
        cmd = [sys.executable, "run_pipeline.py", "--image", e["image"], "--scene", str(scene),
               "--long-side", str(cfg.run.long_side), "--frames", str(cfg.run.frames)]
        if e.get("depth"):
            cmd += ["--depth", e["depth"]]
        if e.get("intrinsics"):
            cmd += ["--intrinsics", *[repr(float(x)) for x in e["intrinsics"]]]
        err = _run_stage(cmd + shlex.split(cfg.run.extra), logs / "run_pipeline.log", cfg.run.stage_timeout_min)
        if err:
            notes["pipeline"] = f"run_pipeline.py failed ({err})"
    canonical = scene / "align" / "canonical.ply"
    if "reconstruct" in cfg.methods and cfg.run.reconstruct and results.exists() and not canonical.exists():
        if (REPO / "reconstruct.py").exists():
            err = _run_stage([sys.executable, "reconstruct.py", "--scene", str(scene)], logs / "reconstruct.log",
                             cfg.run.stage_timeout_min)
            if err:
                notes["reconstruct"] = f"reconstruct.py failed ({err})"
        else:
            notes["reconstruct"] = "reconstruct.py not available"
    return notes


# --------------------------------------------------------------------------- scoring


def _ply_xyz(path: Path) -> np.ndarray:
    from worldstereo.io.ply import read_ply

    v = read_ply(path)
    return np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float64)


def _frames_points(r, idx) -> np.ndarray:
    from worldstereo.geometry import unproject_depth

    parts = []
    for k in idx:
        w2c = np.eye(4)
        w2c[:3] = r.extrinsics_w2c[k]
        pts = unproject_depth(r.depth[k].astype(np.float64), r.K[k].astype(np.float64), np.linalg.inv(w2c))
        parts.append(pts.reshape(-1, 3))
    pts = np.concatenate(parts)
    return pts[np.all(np.isfinite(pts), axis=1)]


def _cameras(r):
    from worldstereo.cameras import Camera

    H, W = r.depth.shape[1:]
    cams = []
    for k in range(len(r)):
        w2c = np.eye(4)
        w2c[:3] = r.extrinsics_w2c[k]
        cams.append(Camera(r.K[k].astype(np.float64), np.linalg.inv(w2c), W, H))
    return cams


def _subsample(pts: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    return pts if len(pts) <= n else pts[np.random.default_rng(seed).choice(len(pts), n, replace=False)]


def image_scores(scene, r, stride: int) -> dict:
    """Generated frames (k ≥ 1) against exact renders of the synthetic scene at the same cameras."""
    from worldstereo.metrics.images import lpips_or_none, psnr, ssim

    ps, ss, lp, absrel = [], [], [], []
    cams = _cameras(r)
    for k in range(1, len(r), stride):
        rgb, depth = scene.render(cams[k])
        ps.append(psnr(r.image[k], rgb))
        ss.append(ssim(r.image[k], rgb))
        lp.append(lpips_or_none(r.image[k], rgb))
        ok = np.isfinite(depth) & (r.depth[k] > 0)
        if ok.any():
            absrel.append(float(np.mean(np.abs(r.depth[k][ok] - depth[ok]) / depth[ok])))
    finite_ps = [p for p in ps if np.isfinite(p)]
    return {"psnr": float(np.mean(finite_ps)) if finite_ps else None, "ssim": float(np.mean(ss)) if ss else None,
            "lpips": float(np.mean(lp)) if lp and all(x is not None for x in lp) else None,
            "depth_absrel": float(np.mean(absrel)) if absrel else None}


def score_entry(e: dict, cfg: EvalConfig, out_json: Path) -> list[dict]:
    """Run (if needed) and score one scene; write its rows to out_json and return them."""
    from worldstereo.geometry import Sim3
    from worldstereo.io.results import load_results
    from worldstereo.metrics.pointcloud import align_to_gt, score_point_clouds
    from worldstereo.metrics.quality import score_quality

    t0 = time.time()
    logs = out_json.parent.parent / "logs" / e["name"]
    notes = run_entry(e, cfg, logs)
    scene_dir = Path(e["scene_dir"])
    results_path = scene_dir / "exports" / "npz" / "results.npz"
    r = load_results(results_path) if results_path.exists() else None

    synth = None
    if e.get("synthetic") and e.get("kind") is not None:
        from worldstereo.bench.builders import make_scene

        synth = make_scene(e["kind"], int(e["seed"]))
    if synth is not None and r is not None:  # GT = surface seen from the run's own cameras
        cams = _cameras(r)[:: max(1, cfg.score.frame_stride)]
        gt = synth.sample_points(cfg.score.gt_samples, seed=0, cameras=cams, exact=False)[0]
    elif e.get("gt_points"):
        gt = _ply_xyz(Path(e["gt_points"]))
    else:
        raise InputError(e.get("image"), "no ground truth: give gt_points (or a synthetic kind + seed)")
    tau = cfg.score.tau
    if tau is None:
        med = e.get("median_depth") or float(np.median(np.linalg.norm(gt, axis=1)))
        tau = cfg.score.tau_rel * float(med)

    clouds: dict[str, tuple[np.ndarray | None, str]] = {}
    for m in cfg.methods:
        if m == "pipeline":
            p = scene_dir / "cache.ply"
            clouds[m] = (_ply_xyz(p), "") if p.exists() else (None, notes.get("pipeline", f"{p.name} missing"))
        elif m == "reconstruct":
            p = scene_dir / "align" / "canonical.ply"
            clouds[m] = (_ply_xyz(p), "") if p.exists() else (None, notes.get("reconstruct", "align/canonical.ply missing"))
        elif m == "input_only":
            if r is not None:
                clouds[m] = (_frames_points(r, [0]), "frame 0 of results.npz")
            elif e.get("depth") and e.get("intrinsics"):
                from worldstereo.geometry import unproject_depth
                from worldstereo.io.images import read_depth

                fx, fy, cx, cy = e["intrinsics"]
                K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
                pts = unproject_depth(read_depth(e["depth"]), K).reshape(-1, 3)
                clouds[m] = (pts[np.all(np.isfinite(pts), 1)], "input depth")
            else:
                clouds[m] = (None, "no results.npz nor input depth")
        elif m == "naive_fusion":
            clouds[m] = (_frames_points(r, range(len(r))), "") if r is not None else (None, "no results.npz")
        else:
            clouds[m] = (None, f"unknown method {m!r}")

    rows = []
    for m, (pts, note) in clouds.items():
        row = {c: None for c in COLUMNS}
        row.update(scene=e["name"], method=m, tau=tau, note=note)
        if pts is None or len(pts) == 0:
            row["status"] = "missing"
            rows.append(row)
            continue
        pts = _subsample(pts, cfg.score.max_points)
        T = align_to_gt(pts, gt, init=Sim3.identity(), icp=cfg.score.icp, max_dist=cfg.score.icp_max_dist * tau)
        s = score_point_clouds(T.apply(pts), gt, tau, auc_tau_max=cfg.score.auc_tau_max * tau)
        row.update(status="ok", fscore=s.fscore, precision=s.precision, recall=s.recall, accuracy=s.accuracy_mean,
                   completeness=s.completeness_mean, auc=s.auc, points=len(pts))
        if m == "pipeline" and r is not None:
            q = score_quality(r.subset(slice(None, None, max(1, cfg.score.frame_stride))), points=pts)
            row.update(q_completeness=q.completeness, q_geometric=q.geometric_consistency,
                       q_multiview=q.multiview_consistency)
            if synth is not None:
                row.update(image_scores(synth, r, cfg.score.frame_stride))
        rows.append(row)
    payload = {"scene": e["name"], "config_hash": _score_hash(cfg), "seconds": round(time.time() - t0, 2), "rows": rows}
    atomic_write_text(out_json, json.dumps(payload, indent=1, default=float))
    return rows


def _score_hash(cfg: EvalConfig) -> str:
    return config_hash(cfg.score, cfg.run, list(cfg.methods))


def _is_scored(path: Path, chash: str) -> bool:
    try:
        return json.loads(path.read_text()).get("config_hash") == chash
    except (OSError, json.JSONDecodeError):
        return False


# --------------------------------------------------------------------------- table


def with_means(rows: list[dict]) -> list[dict]:
    """Rows sorted by scene, then one mean row per method (over scenes where it is ok) last."""
    out = sorted(rows, key=lambda r: (r["scene"], r["method"]))
    for m in dict.fromkeys(r["method"] for r in rows):
        ok = [r for r in rows if r["method"] == m and r["status"] == "ok"]
        mean = {c: None for c in COLUMNS}
        mean.update(scene="mean", method=m, status=f"{len(ok)}/{sum(r['method'] == m for r in rows)} ok")
        for c in COLUMNS[3:-1]:
            vals = [r[c] for r in ok if isinstance(r.get(c), (int, float)) and np.isfinite(r[c])]
            mean[c] = float(np.mean(vals)) if vals else None
        out.append(mean)
    return out


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown(rows: list[dict]) -> str:
    cols = [c for c in COLUMNS if c != "note"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def provenance() -> dict:
    import scipy

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    try:
        import torch

        torch_v = torch.__version__
    except ImportError:
        torch_v = None
    return {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "worldstereo": __version__, "git": commit,
            "python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
            "torch": torch_v, "date": time.strftime("%Y-%m-%dT%H:%M:%S")}


def write_table(rows: list[dict], cfg: EvalConfig, outcomes) -> str:
    table = with_means(rows)
    prov = provenance()
    failed = {o.name: o.error for o in outcomes if o.status == "failed"}
    atomic_write_text(cfg.out / "benchmark.json", json.dumps(
        {"provenance": prov, "config": asdict(cfg), "failed_scenes": failed, "rows": table}, indent=1, default=str))
    with open(cfg.out / "benchmark.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(table)
    md = markdown(table)
    md += f"\n\n`{prov['command']}` — worldstereo {prov['worldstereo']} ({prov['git']}), python {prov['python']}, " \
          f"numpy {prov['numpy']}, scipy {prov['scipy']}, torch {prov['torch']}"
    if failed:
        md += "\n\nFailed scenes: " + "; ".join(f"{k}: {v}" for k, v in failed.items())
    return md


def evaluate(cfg: EvalConfig) -> list[dict]:
    entries = load_entries(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    scores = cfg.out / "scores"
    chash = _score_hash(cfg)
    if cfg.launch.log_dir == Path("logs/jobs"):
        cfg.launch.log_dir = cfg.out / "logs" / "jobs"
    jobs = []
    for e in entries:
        path = scores / f"{e['name']}.json"
        done = None if cfg.force else (lambda p=path: _is_scored(p, chash))
        jobs.append(Job(e["name"], score_entry, (e, cfg, path), done=done))
    outcomes = run_jobs(jobs, cfg.launch)
    rows = []
    for e, o in zip(entries, outcomes):
        path = scores / f"{e['name']}.json"
        if _is_scored(path, chash):
            rows += json.loads(path.read_text())["rows"]
        else:
            rows += [{**{c: None for c in COLUMNS}, "scene": e["name"], "method": m, "status": "failed",
                      "note": o.error} for m in cfg.methods]
    md = write_table(rows, cfg, outcomes)
    print(md)
    info(f"[eval_benchmark] table → {cfg.out / 'benchmark.json'}, {cfg.out / 'benchmark.csv'}")
    return rows


@cli_entry
def main(cfg: EvalConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main(tyro.cli(EvalConfig, config=(tyro.conf.OmitArgPrefixes,)))
