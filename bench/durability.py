"""What durable writes cost: every writer with ``fsync=True`` (the default) and
``fsync=False``, against the raw library call alone and plus the same syncs (the file, or
every file and folder of a store, then the parent folder).

One interleaved run on the same stack (best of N; outputs removed and ``os.sync()`` before
each call, untimed), because these machines are noisy. Usage:
``python -m bench.durability [--frames 100] [--size 256] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from xafm.core import durable


def _clear(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def timed(fn: Callable[[], object], out: Path) -> float:
    _clear(out)
    os.sync()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def synced(fn: Callable[[], object], out: Path) -> Callable[[], None]:
    """``fn`` followed by the syncs a durable write makes."""

    def run() -> None:
        fn()
        if out.is_dir():
            durable.sync_tree(out)
        else:
            durable.sync_file(out)
        durable.sync_dir(out.parent)

    return run


def candidates(folder: Path, frames: int, size: int) -> dict[str, dict[str, tuple[Callable[[], object], Path]]]:
    import h5py
    import tifffile
    import zarr

    import xafm

    arr = np.random.default_rng(0).normal(size=(frames, size, size)).astype(np.float32)
    da = xafm.stack(arr, pixel_size_nm=1.0, times=np.arange(frames) * 0.1)

    def raw_h5() -> None:
        with h5py.File(folder / "raw.h5", "w") as f:
            f.create_dataset("data", data=arr)

    def raw_zarr() -> None:
        zarr.create_array(str(folder / "raw.zarr"), data=arr, chunks=(max(1, 2**22 // (size * size * 4)), size, size), zarr_format=3)

    raw: dict[str, tuple[Callable[[], object], Path, str]] = {
        "h5": (raw_h5, folder / "raw.h5", "h5py create_dataset"),
        "npz": (lambda: np.savez(folder / "raw.npz", data=arr), folder / "raw.npz", "np.savez"),
        "tif": (lambda: tifffile.imwrite(folder / "raw.tif", arr, photometric="minisblack"), folder / "raw.tif", "tifffile.imwrite"),
        "zarr": (raw_zarr, folder / "raw.zarr", "zarr.create_array"),
    }
    names = {"h5": "x.h5", "npz": "x.npz", "tif": "x.ome.tif", "zarr": "x.ome.zarr", "gif": "x.gif", "mp4": "x.mp4", "png": "x_frames"}
    out = {}
    for fmt, name in names.items():
        path = folder / name

        def ours(fsync: bool, fmt: str = fmt, path: Path = path) -> Callable[[], object]:
            return lambda: xafm.registry.write(fmt, da, path, fsync=fsync)

        row = {"xafm fsync": (ours(True), path), "xafm no fsync": (ours(False), path)}
        if fmt in raw:
            fn, rpath, label = raw[fmt]
            row[f"raw ({label})"] = (fn, rpath)
            row["raw + fsync"] = (synced(fn, rpath), rpath)
        out[fmt] = row
    return out


def measure(frames: int, size: int, repeat: int, folder: Path) -> list[dict]:
    rows = []
    for fmt, cands in candidates(folder, frames, size).items():
        best = {k: float("inf") for k in cands}
        names = list(cands)
        for r in range(repeat + 1):  # round 0 warms up and is not counted
            for k in names if r % 2 else names[::-1]:
                fn, out = cands[k]
                dt = timed(fn, out)
                if r:
                    best[k] = min(best[k], dt)
        for fn_out in cands.values():
            _clear(fn_out[1])
        rows.append({"format": fmt, **best})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--folder", type=Path, default=None, help="where to write (default: a temporary folder; its disk is what is measured)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="xafm-durability-", dir=args.folder))
    try:
        print(f"machine: {platform.platform()}, {os.cpu_count()} cores, python {platform.python_version()}; writing to {folder}")
        print(f"stack: {args.frames} x {args.size} x {args.size} float32 ({args.frames * args.size**2 * 4 / 2**20:.0f} MiB), best of {args.repeat} interleaved rounds")
        rows = measure(args.frames, args.size, args.repeat, folder)
        for r in rows:
            cells = "  ".join(f"{k}: {v:.3f} s" for k, v in r.items() if k != "format")
            on, off = r["xafm fsync"], r["xafm no fsync"]
            extra = f"  fsync costs {on - off:+.3f} s ({on / off:.2f}x)"
            if "raw + fsync" in r:
                extra += f"; xafm/raw with fsync {on / r['raw + fsync']:.2f}x"
            print(f"{r['format']:<5} {cells}{extra}")
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
