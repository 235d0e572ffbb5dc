"""Benchmark: what the file-identity check costs a lazy read (``docs/guarantees.md``,
"Reading while a file is replaced").

Run from the project root: ``python -m bench.identity_check [--frames 64 --size 256]``.

Every lazy read ``stat``s the file before and after it. For each of xafm's lazy formats
(h5, npz, OME-TIFF, OME-Zarr) a stack is written to a temporary folder and every frame is
read once through the lazy array (``arr[i]``, as a dask task does), with the check and
with it turned off (``LazyArray.check_unchanged`` replaced by a no-op), in interleaved
rounds; the best round per frame is printed, with one bare ``os.stat`` for scale.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

FORMATS = ("h5", "npz", "tif", "zarr")


def _lazy(path: Path):
    from xafm import registry

    ds = registry.open_dataset(path)
    var = next(iter(ds.data_vars.values())).variable._data
    while not hasattr(var, "check_unchanged"):  # the LazyArray under xarray's wrapper: what a dask task reads
        var = var.array
    return var


def per_frame(arr, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        arr[i]
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()

    import xafm
    from xafm.core import lazy
    from xafm.formats import omezarr

    data = np.random.default_rng(0).normal(size=(args.frames, args.size, args.size)).astype(np.float32)
    da = xafm.stack(data, pixel_size_nm=1.0)
    checked = lazy.LazyArray.check_unchanged
    print(f"# {platform.platform()}, {args.frames} frames of {args.size} x {args.size} float32, best of {args.repeat}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        for _ in range(10000):
            os.stat(tmp)
        print(f"os.stat: {(time.perf_counter() - t0) / 10000 * 1e6:.2f} us")
        print(f"{'format':8} {'checked us/frame':>17} {'unchecked':>10} {'cost':>8}")
        for fmt in FORMATS:
            path = Path(tmp) / f"s.{ {'tif': 'ome.tif', 'zarr': 'ome.zarr'}.get(fmt, fmt) }"
            if fmt == "zarr":
                omezarr.write(da, path)
            else:
                da.afm.export(tmp, "s", [fmt])
            arr = _lazy(path)
            best = {"checked": float("inf"), "unchecked": float("inf")}
            for round_ in range(args.repeat + 1):
                for name in best:
                    lazy.LazyArray.check_unchanged = checked if name == "checked" else (lambda self: None)  # type: ignore[method-assign]
                    dt = per_frame(arr, args.frames)
                    if round_:
                        best[name] = min(best[name], dt)
            lazy.LazyArray.check_unchanged = checked  # type: ignore[method-assign]
            c, u = best["checked"] * 1e6, best["unchecked"] * 1e6
            print(f"{fmt:8} {c:17.1f} {u:10.1f} {c - u:+8.1f}")


if __name__ == "__main__":
    main()
