"""``python -m bench.processing``: the pipeline ``remove_plane; row_median_align;
gaussian_filter:sigma=1`` on 1000 frames of 512 x 512 (float64, 2 GiB) made by tiling the
real ``asd_sample_0.asd`` video's 200 x 200 frames, in one interleaved run:

* ``numpy``: a plain vectorised numpy/scipy implementation of the same arithmetic (whole
  blocks of 64 frames: one ``lstsq`` plane fit, one ``np.median``, one 3-D
  ``ndimage.gaussian_filter`` with no smoothing along time): the limit;
* ``xafm``: the catalogue's steps on the in-memory stack;
* ``playNano``: playNano 0.5's own pipeline parser and ``ProcessingPipeline`` on the same
  frames (only where it is installed: run this with playNano's Python, e.g.
  ``/work/bench-venv/bin/python -m bench.processing`` from the project root). Its pipeline
  keeps a copy of every step's output besides the raw stack (about 12 GiB here), so it runs
  in batches of ``--playnano-batch`` frames; its work is frame by frame, so the time adds up;
* ``xafm dask``: the same pipeline from a dask-backed file (an HDF5 bundle xafm wrote,
  opened with ``chunks={}``) to an HDF5 bundle, in a child process whose peak RSS
  (``VmHWM``) is reported.

Every implementation runs ``--rounds`` times, in turn; the best time of each is reported,
and the outputs are checked against each other. Targets (issue 12): xafm at least 5 times
faster than playNano, within 1.5 times the numpy reference, the file pipeline under
600 MiB peak RSS.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ._peak_rss import REPORT_AT_EXIT, peak_mib

PIPELINE = "remove_plane; row_median_align; gaussian_filter:sigma=1"
SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "afm" / "asd_sample_0.asd"

#: The child: open the bundle lazily, run the pipeline, write a bundle; report VmHWM (KiB).
_CHILD = REPORT_AT_EXIT + r"""
import sys, time
import xafm
from xafm import processing
t0 = time.perf_counter()
da = xafm.open(sys.argv[1], chunks={})
for name, params in (("remove_plane", {}), ("row_median_align", {}), ("gaussian_filter", {"sigma": 1.0})):
    da = processing.run(da, name, **params)
da.afm.to_h5(sys.argv[2], overwrite=True)
sys.stderr.write(f"SECONDS {time.perf_counter() - t0}\n")
"""


def make_stack(frames: int, size: int, sample: Path) -> np.ndarray:
    """``frames`` frames of ``size`` x ``size``: the sample's frames in turn, each tiled."""
    import xafm

    src = np.asarray(xafm.open(sample).values, dtype=np.float64)
    n, ny, nx = src.shape
    reps = (-(-size // ny), -(-size // nx))
    tiles = np.stack([np.tile(f, reps)[:size, :size] for f in src])
    out = np.empty((frames, size, size))
    for i in range(frames):
        out[i] = tiles[i % n]
    return out


# --------------------------------------------------------------------------------------
# the three implementations
# --------------------------------------------------------------------------------------
def numpy_reference(z: np.ndarray, block: int = 64) -> np.ndarray:
    """The same arithmetic written plainly with whole-block numpy/scipy calls."""
    from scipy import ndimage

    n, ny, nx = z.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    design = np.stack([np.ones(ny * nx), xx.ravel(), yy.ravel()], axis=1)
    out = np.empty_like(z)
    for s in range(0, n, block):
        b = z[s : s + block]
        m = b.shape[0]
        coeffs, *_ = np.linalg.lstsq(design, b.reshape(m, -1).T, rcond=None)
        levelled = b - (design @ coeffs).T.reshape(m, ny, nx)
        levelled -= np.median(levelled, axis=2, keepdims=True)
        out[s : s + m] = ndimage.gaussian_filter(levelled, sigma=(0, 1, 1))
    return out


def run_xafm(z: np.ndarray) -> np.ndarray:
    import xafm
    from xafm import processing

    da = xafm.stack(z, pixel_size_nm=0.5)
    for name, params in (("remove_plane", {}), ("row_median_align", {}), ("gaussian_filter", {"sigma": 1.0})):
        da = processing.run(da, name, **params)
    return np.asarray(da.values)


def run_playnano(z: np.ndarray, batch: int) -> np.ndarray | None:
    try:
        from playnano.afm_stack import AFMImageStack
        from playnano.cli.utils import parse_processing_string
        from playnano.processing.pipeline import ProcessingPipeline
    except ImportError:
        return None
    import logging

    logging.disable(logging.WARNING)
    out = np.empty_like(z)
    for s in range(0, z.shape[0], batch):
        part = z[s : s + batch]
        stack = AFMImageStack(part.copy(), pixel_size_nm=0.5, channel="height", file_path=Path("bench.asd"), frame_metadata=[{"timestamp": float(i)} for i in range(part.shape[0])])
        pipeline = ProcessingPipeline(stack)
        for name, kwargs in parse_processing_string(PIPELINE):
            pipeline.add_filter(name, **kwargs)
        pipeline.run()
        out[s : s + part.shape[0]] = stack.data
        del stack, pipeline
    return out


def run_from_file(z: np.ndarray, folder: Path) -> dict[str, float]:
    import xafm

    src, dst = folder / "in.h5", folder / "out.h5"
    if not src.exists():
        xafm.stack(z, pixel_size_nm=0.5).afm.to_h5(src)
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", _CHILD, str(src), str(dst)], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    wall = time.perf_counter() - t0
    if res.returncode:
        raise RuntimeError(f"the file pipeline failed:\n{res.stderr[-3000:]}")
    seconds = next(float(line.split()[1]) for line in res.stderr.splitlines() if line.startswith("SECONDS"))
    return {"seconds": seconds, "wall_seconds": wall, "peak_rss_mib": peak_mib(res.stderr)}


# --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--playnano-batch", type=int, default=100)
    p.add_argument("--sample", type=Path, default=SAMPLE)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, python {platform.python_version()}, numpy {np.__version__}")
    z = make_stack(args.frames, args.size, args.sample)
    print(f"stack: {z.shape} float64, {z.nbytes / 2**30:.2f} GiB, from {args.sample.name}; pipeline: {PIPELINE}")
    times: dict[str, list[float]] = {"numpy": [], "xafm": [], "playNano": []}
    results: dict[str, np.ndarray] = {}
    files: list[dict[str, float]] = []
    folder = Path(tempfile.mkdtemp(prefix="xafm-bench-processing-"))
    try:
        for r in range(args.rounds):
            for label, func in (("numpy", numpy_reference), ("xafm", run_xafm), ("playNano", lambda a: run_playnano(a, args.playnano_batch))):
                gc.collect()
                t0 = time.perf_counter()
                out = func(z)
                seconds = time.perf_counter() - t0
                if out is None:
                    continue
                times[label].append(seconds)
                print(f"round {r + 1} {label:<9} {seconds:7.2f} s")
                if r == 0:
                    results[label] = out[:: max(1, args.frames // 50)].copy()
                del out
            got = run_from_file(z, folder)
            files.append(got)
            print(f"round {r + 1} xafm dask {got['seconds']:7.2f} s  peak RSS {got['peak_rss_mib']:.0f} MiB (file to file)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    for label in ("numpy", "playNano"):
        if label in results:
            diff = float(np.max(np.abs(results[label] - results["xafm"])))
            print(f"largest difference xafm - {label}: {diff:.2e}")
    best = {k: min(v) for k, v in times.items() if v}
    summary: dict[str, object] = {"best_seconds": best, "file": min(files, key=lambda f: f["seconds"]), "peak_rss_mib": max(f["peak_rss_mib"] for f in files)}
    print("best: " + ", ".join(f"{k} {v:.2f} s" for k, v in best.items()))
    print(f"xafm / numpy reference: {best['xafm'] / best['numpy']:.2f} (target <= 1.5)")
    if "playNano" in best:
        print(f"playNano / xafm: {best['playNano'] / best['xafm']:.2f} (target >= 5)")
    print(f"file to file: peak RSS {summary['peak_rss_mib']:.0f} MiB (target < 600)")
    if args.json:
        args.json.write_text(json.dumps({"times": times, "files": files, **summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
