"""The benchmark table: one `ScoreRow` per scene and method, mean rows last, written as markdown
(screen), benchmark.json (with provenance and the failed scenes) and benchmark.csv."""

from __future__ import annotations

import csv
import json
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from worldstereo import __version__
from worldstereo.io.atomic import atomic_path, atomic_write_text


@dataclass
class ScoreRow:
    """One table row. status: ok | missing (no cloud to score; `note` says why) | failed (the scene's
    job failed) | "k/n ok" on mean rows. Metrics are None where they do not apply."""

    scene: str
    method: str
    status: str
    fscore: Optional[float] = None
    precision: Optional[float] = None
    recall: Optional[float] = None
    accuracy: Optional[float] = None
    completeness: Optional[float] = None
    auc: Optional[float] = None
    tau: Optional[float] = None
    psnr: Optional[float] = None
    ssim: Optional[float] = None
    lpips: Optional[float] = None
    depth_absrel: Optional[float] = None
    q_completeness: Optional[float] = None
    q_geometric: Optional[float] = None
    q_multiview: Optional[float] = None
    points: Optional[float] = None
    """Points scored (an int on scene rows, a mean on mean rows)."""
    note: Optional[str] = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ScoreRow":
        return cls(**{k: d.get(k) for k in COLUMNS})


COLUMNS: list[str] = [f.name for f in fields(ScoreRow)]
METRIC_COLUMNS: list[str] = COLUMNS[3:-1]  # averaged on the mean rows


def with_means(rows: Sequence[ScoreRow]) -> list[ScoreRow]:
    """Rows sorted by scene, then one mean row per method (over scenes where it is ok) last."""
    out = sorted(rows, key=lambda r: (r.scene, r.method))
    for m in dict.fromkeys(r.method for r in rows):
        ok = [r for r in rows if r.method == m and r.status == "ok"]
        mean = ScoreRow("mean", m, f"{len(ok)}/{sum(r.method == m for r in rows)} ok")
        for c in METRIC_COLUMNS:
            vals = [getattr(r, c) for r in ok if isinstance(getattr(r, c), (int, float)) and np.isfinite(getattr(r, c))]
            setattr(mean, c, float(np.mean(vals)) if vals else None)
        out.append(mean)
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown(rows: Sequence[ScoreRow]) -> str:
    cols = [c for c in COLUMNS if c != "note"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(getattr(r, c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def provenance(repo: Path, argv: Sequence[str]) -> dict[str, Optional[str]]:
    """The command, versions and git commit that produced a table."""
    import scipy

    try:
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True)
        commit = git.stdout.strip()
    except OSError:
        commit = ""
    try:
        import torch

        torch_v: Optional[str] = torch.__version__
    except ImportError:
        torch_v = None
    return {"command": " ".join([Path(argv[0]).name, *argv[1:]]), "worldstereo": __version__, "git": commit,
            "python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
            "torch": torch_v, "date": time.strftime("%Y-%m-%dT%H:%M:%S")}


def write_tables(rows: Sequence[ScoreRow], failed: dict[str, str], out: Path, config: dict[str, Any],
                 prov: dict[str, Optional[str]]) -> str:
    """Write <out>/benchmark.json and .csv (scene rows + means); return the markdown for the screen,
    with the provenance line and the failed scenes (scene: reason) under the table."""
    table = with_means(rows)
    dicts = [asdict(r) for r in table]
    atomic_write_text(out / "benchmark.json", json.dumps(
        {"provenance": prov, "config": config, "failed_scenes": failed, "rows": dicts}, indent=1, default=str))
    with atomic_path(out / "benchmark.csv") as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(dicts)
    md = markdown(table)
    md += f"\n\n`{prov['command']}` — worldstereo {prov['worldstereo']} ({prov['git']}), python {prov['python']}, " \
          f"numpy {prov['numpy']}, scipy {prov['scipy']}, torch {prov['torch']}"
    if failed:
        md += f"\n\nFailed scenes ({len(failed)}): " + "; ".join(f"{k}: {v}" for k, v in failed.items())
    return md
