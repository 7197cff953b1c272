"""Run the benchmarks/ scripts one after another, each in its quick mode, and list their wall times.

    python -m benchmarks.run_all                          # quick: small sizes, a few minutes on 2 cores
    python -m benchmarks.run_all --full                   # BENCHMARKS.md's settings (an hour or more on 2 cores)
    python -m benchmarks.run_all --only metrics,rasterizer

Each benchmark runs as `python -m benchmarks.bench_<name> ...` in its own process (its own peak RSS),
its output passed through; scratch folders live in a temporary directory that is removed afterwards.
The quick mode is a smoke run with real figures at small sizes, not the figures BENCHMARKS.md quotes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Bench:
    name: str
    """Short name; the module is benchmarks.bench_<name>."""
    quick: tuple[str, ...]
    """Arguments of the quick run; `{tmp}` is replaced by a scratch folder."""
    full: tuple[str, ...] = ()
    """Arguments of the full run (BENCHMARKS.md's commands; most use the script's defaults)."""


BENCHES = (
    Bench("metrics", ("--n", "100000")),
    Bench("cache_render", ("--points", "100000", "--frames", "5")),
    Bench("rasterizer", ("--repeats", "1")),
    Bench("reconstruct", ("--frames", "8", "--points", "2000")),
    # an empty --scene forces the synthetic scene (scenes/motorcycle would be used when present); one
    # thread, 30 iterations (24 s here; 100 at 2 threads took 1097 s on the shared, loaded 2-core machine)
    Bench("train_gs", ("--scene", "{tmp}/no_scene", "--synthetic-dir", "{tmp}/gs", "--iterations", "30",
                       "--threads", "1"),
          ("--synthetic-dir", "{tmp}/gs")),
    Bench("pipeline", ("--scene", "{tmp}/moto", "--long-side", "128", "--frames", "5"), ("--scene", "{tmp}/moto")),
)


def select(only: str | None) -> list[Bench]:
    """The benchmarks named in `only` (comma-separated), in the listed order; all when None."""
    if only is None:
        return list(BENCHES)
    names = [n.strip() for n in only.split(",") if n.strip()]
    known = {b.name for b in BENCHES}
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"error: --only: unknown benchmark {', '.join(unknown)} (known: {', '.join(sorted(known))})",
              file=sys.stderr)
        sys.exit(2)
    return [b for b in BENCHES if b.name in names]


def run_one(bench: Bench, full: bool, tmp: Path) -> tuple[float, int]:
    """Run one benchmark with its output passed through; (wall seconds, exit code)."""
    args = [a.replace("{tmp}", str(tmp)) for a in (bench.full if full else bench.quick)]
    cmd = [sys.executable, "-m", f"benchmarks.bench_{bench.name}", *args]
    print(f"\n=== {bench.name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, cwd=REPO).returncode
    return time.perf_counter() - t0, rc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="BENCHMARKS.md's settings instead of the quick ones")
    ap.add_argument("--only", help="comma-separated names: " + ", ".join(b.name for b in BENCHES))
    a = ap.parse_args()
    benches = select(a.only)
    results = []
    with tempfile.TemporaryDirectory(prefix="worldstereo_bench_") as tmp:
        for b in benches:
            results.append((b.name, *run_one(b, a.full, Path(tmp))))
    print(f"\n{'benchmark':<14} {'wall s':>8}  result")
    for name, wall, rc in results:
        print(f"{name:<14} {wall:8.1f}  {'ok' if rc == 0 else f'FAILED (exit {rc})'}")
    sys.exit(1 if any(rc != 0 for _, _, rc in results) else 0)


if __name__ == "__main__":
    main()
