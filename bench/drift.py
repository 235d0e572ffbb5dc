"""Benchmark: drift correction of 1000 frames of 512 x 512, xafm's ``align_frames`` beside playNano's.

Run from the project root with a Python that has playNano too (it is GPL, so only in a
separate environment): ``/work/bench-venv/bin/python -m bench.drift [--frames 1000 --size 512]``.

The stack is made from the real ``asd_sample_0.asd`` frames (levelled with xafm's
``remove_plane``), tiled 3 x 3 and cut at a drifting window: a slow diagonal drift with
jitter, sub-pixel (bilinear between the integer cuts). Both tools align the same float32
stack in the same run (best of ``--repeat``), with playNano's defaults and with
``max_shift``; the script prints the times, the ratios, and each tool's error on the drift
put in. The sample's 32 frames drift among themselves too, so the error is taken between
frames cut from the same sample frame (``i`` and ``i + 32``), whose relative shift is known
exactly.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_stack(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` frames of ``size`` x ``size`` cut from the tiled sample, and the shifts that
    align them (pixels, (dy, dx), frame 0 at 0)."""
    import xafm

    path = Path(os.environ.get("XAFM_SHARED", ROOT.parent / "shared")) / "data" / "afm" / "asd_sample_0.asd"
    src = xafm.open(path).afm.remove_plane().values.astype(np.float32)
    reps = -(-(size + 64) // src.shape[1])
    tiled = np.tile(src, (1, reps, reps))
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    drift = np.column_stack([0.02 * t, -0.015 * t]) + rng.normal(0, 0.3, (n, 2))
    drift = drift - drift.min(axis=0) + 1  # cut positions, >= 1 px into the tiling
    drift[:, 0] = np.minimum(drift[:, 0], tiled.shape[1] - size - 2)
    drift[:, 1] = np.minimum(drift[:, 1], tiled.shape[2] - size - 2)
    out = np.empty((n, size, size), np.float32)
    for i, (py, px) in enumerate(drift):
        big = tiled[i % src.shape[0]]
        iy, ix = int(py), int(px)
        fy, fx = py - iy, px - ix
        a = big[iy : iy + size + 1, ix : ix + size + 1]
        rows = (1 - fy) * a[:-1] + fy * a[1:]
        out[i] = (1 - fx) * rows[:, :-1] + fx * rows[:, 1:]
    applied = drift - drift[0]  # a frame cut further down/right must move down/right to align
    return out, applied


def relative_error(shifts: np.ndarray, applied: np.ndarray, period: int = 32) -> float:
    """Median error (px) of the shift between frames ``i`` and ``i + period``, which show
    the same sample frame, so their relative shift is exactly the drift put in."""
    got = shifts[period:] - shifts[:-period]
    want = applied[period:] - applied[:-period]
    return float(np.median(np.abs(got - want)))


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--max-shift", type=int, default=30)
    args = parser.parse_args()

    import scipy

    import xafm

    try:
        from playnano.processing.video_processing import align_frames as playnano_align
    except ImportError:
        playnano_align = None
    stack, applied = make_stack(args.frames, args.size)
    da = xafm.stack(stack, pixel_size_nm=0.5)
    print(f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores; numpy {np.__version__}, scipy {scipy.__version__}")
    print(f"stack {stack.shape} float32 ({stack.nbytes / 2**20:.0f} MiB), drift up to {np.abs(applied).max(axis=0).round(1).tolist()} px")
    xafm.processing.align_frames(da[:16])  # warm-up: imports, FFT plans
    if playnano_align is not None:
        playnano_align(stack[:16])
    for max_shift in (None, args.max_shift):
        label = f"max_shift={max_shift}"
        t_x, out = best_of(lambda ms=max_shift: xafm.processing.align_frames(da, max_shift=ms), args.repeat)
        ours = np.column_stack([out.align_shift_y_nm.values, out.align_shift_x_nm.values]) / 0.5
        t_xi, out_i = best_of(lambda ms=max_shift: xafm.processing.align_frames(da, max_shift=ms, subpixel=False), args.repeat)
        ours_i = np.column_stack([out_i.align_shift_y_nm.values, out_i.align_shift_x_nm.values]) / 0.5
        del out, out_i
        line = f"{label}: xafm {t_x:.1f} s (sub-pixel, error {relative_error(ours, applied):.3f} px)"
        line += f", {t_xi:.1f} s (subpixel=False, error {relative_error(ours_i, applied):.3f} px)"
        if playnano_align is not None:
            t_p, res = best_of(lambda ms=max_shift: playnano_align(stack, max_shift=ms), args.repeat)
            theirs = np.asarray(res[1]["shifts"], dtype=float)
            del res
            same = int((theirs == ours_i).all(axis=1).sum())
            line += f"; playNano {t_p:.1f} s (error {relative_error(theirs, applied):.3f} px)"
            line += f"; playNano / xafm = {t_p / t_x:.1f}x (sub-pixel), {t_p / t_xi:.1f}x (integer); integer shifts equal on {same}/{len(theirs)} frames"
        print(line, flush=True)


if __name__ == "__main__":
    main()
