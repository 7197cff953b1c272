"""Outside check: our 27-view bank equals the official release's pano_bank/cameras.json.

    python -m benchmarks.check_release_pano_bank /path/to/WorldStereo/examples/panorama/<id>/pano_bank/cameras.json

The release file is not shipped (read it from a local clone of FuchengSu/WorldStereo); prints the
largest rotation / translation / K differences and exits 1 above 1e-6 (relative for K).
"""

from __future__ import annotations

import sys

import numpy as np

from worldstereo.panorama import bank_cameras, read_bank_cameras


def main(path: str) -> int:
    release = read_bank_cameras(path)
    ours = bank_cameras()
    if len(ours) != len(release):
        print(f"{len(release)} views in the release file, {len(ours)} in ours")
        return 1
    dc2w = max(float(np.abs(a.c2w - b.c2w).max()) for a, b in zip(ours, release))
    dK = max(float(np.abs(a.K - b.K).max() / np.abs(a.K).max()) for a, b in zip(ours, release))
    print(f"{len(ours)} views: max |Δc2w| {dc2w:.2e}, max relative |ΔK| {dK:.2e}")
    return 0 if dc2w < 1e-6 and dK < 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
