"""Lazy frame reads of a large deflated NPZ bundle: peak memory and time, this tree against
another (by default ``main``, exported with ``git archive`` into a temporary folder).

The bundle is written by xafm (``to_npz(compress=True)``) from noisy float32 frames, so it
compresses about as little as real AFM heights. Each scenario runs in a fresh process
(peak RSS from ``/proc/self/status``): the last frame alone; ten random frames one after
the other; twenty consecutive frames from the middle, one at a time.

Usage: ``python -m bench.npz_lazy [--frames 300] [--size 1024] [--against main]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._peak_rss import REPORT_AT_EXIT, peak_mib

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
import numpy as np, xarray as xr
import xafm
path, scenario = sys.argv[1], sys.argv[2]
da = xr.open_dataarray(path, engine="xafm")
n = da.sizes["time"]
frames = {"last": [n - 1], "random": np.random.default_rng(1).integers(0, n, 10).tolist(),
          "consecutive": list(range(n // 2, n // 2 + 20))}[scenario]
times = []
for f in frames:
    t0 = time.perf_counter()
    da.isel(time=int(f)).values
    times.append(time.perf_counter() - t0)
print(json.dumps({"xafm": xafm.__file__, "first_s": times[0], "rest_s": sum(times[1:]), "reads": len(times)}))
"""


def export_tree(ref: str, folder: Path) -> Path:
    """``git archive ref`` unpacked into ``folder`` (reads git objects only)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def make_bundle(path: Path, frames: int, size: int) -> None:
    import dask.array as dsa

    import xafm

    data = dsa.random.default_rng(0).normal(size=(frames, size, size), chunks=(8, size, size)).astype(np.float32)
    xafm.stack(data, pixel_size_nm=1.0, times=np.arange(frames) * 0.1).afm.to_npz(path, compress=True, overwrite=True)


def run(tree: Path, bundle: Path, scenario: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", REPORT_AT_EXIT + CHILD, str(bundle), scenario],
        cwd=tree, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree)},
    )
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["peak_rss_mib"] = peak_mib(proc.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--against", default="main", help="git ref of the code to compare with")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="xafm-npz-lazy-") as tmp:
        tmp_path = Path(tmp)
        bundle = tmp_path / "large.npz"
        t0 = time.perf_counter()
        make_bundle(bundle, args.frames, args.size)
        print(f"wrote {bundle.stat().st_size / 2**30:.2f} GiB ({args.frames} frames of {args.size}x{args.size} float32, deflated) "
              f"in {time.perf_counter() - t0:.0f} s")
        (tmp_path / "other").mkdir()
        other = export_tree(args.against, tmp_path / "other")
        rows = []
        for scenario in ("last", "random", "consecutive"):
            for label, tree in ((args.against, other), ("this tree", ROOT)):
                r = run(tree, bundle, scenario)
                rows.append({"scenario": scenario, "code": label, **r})
                print(f"{scenario:12s} {label:10s} peak RSS {r['peak_rss_mib']:8.0f} MiB   first read {r['first_s']:6.2f} s   "
                      f"then {r['reads'] - 1} reads {r['rest_s']:6.2f} s")
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
