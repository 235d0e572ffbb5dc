"""``python -m bench.omezarr_speed``: ``to_ome_zarr`` and ``xafm.open`` of an OME-Zarr store
against zarr-python doing the same work, in one interleaved run (issue 16).

Stacks (float32, ``--size`` px square frames, about ``--gib`` GiB each):

* ``real``: the levelled (``remove_plane``) frames of the real ``asd_sample_0.asd`` video,
  each tiled to the frame size, in turn until the stack is full;
* ``synthetic``: smooth random surfaces (cumulative sums of normal noise along x) plus noise.

Work measured, each as xafm / zarr-python in the same round (rounds interleaved, the order
of the two alternating, outputs removed and ``os.sync()`` run outside the timings, so no
call pays for another's write-back; best of the rounds):

* ``write numpy`` / ``write dask``: ``levels`` pyramid levels, same codec (Blosc lz4 5
  shuffle), chunks, fill value and ``write_empty_chunks`` as xafm's; zarr-python writes
  level 0 with ``a[:] = data`` and each further level computed in memory by the same 2x2
  mean (:func:`xafm.formats.omezarr.reduce.downsample_block`), or for dask input one
  ``dask.array.store`` of all levels (each from the source's graph). xafm runs with
  ``fsync=False`` (zarr-python does not sync); it also computes the display window
  (percentiles and finite range) that zarr-python does not;
* ``read``: level 0 whole, ``xafm.open(path).values`` against ``zarr.open_array(...)[:]``;
* ``open``: in a fresh process after ``import xafm``: the first ``xafm.open(path, lazy=True)`` (which reads no values, as zarr's side reads none; it
  imports what reading OME-Zarr needs) against ``import zarr; zarr.open_group(path)`` in a
  fresh process; and the modules the open imported, checked for validation and rendering
  ones (pydantic, ome_zarr_models, matplotlib, dask).

Target (issue 16): every ratio at most 1.25. Prints one JSON line per measurement and a
table at the end. Usage: ``python -m bench.omezarr_speed [--gib 1.5] [--rounds 3]``;
``--writes-only`` (and ``--kinds numpy``) for the writes alone, ``--pipelines default,zarrs``
for every write on zarr's and on the zarrs codec pipeline in each round (``pip install zarrs``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE = Path(os.environ.get("XAFM_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data" / "afm" / "asd_sample_0.asd"
LEVELS = 3
#: Codec pipelines ``--pipelines`` can interleave (zarr's own, zarrs' Rust one).
PIPELINES = {"default": "zarr.core.codec_pipeline.BatchedCodecPipeline", "zarrs": "zarrs.ZarrsCodecPipeline"}


def real_stack(n: int, size: int) -> np.ndarray:
    import xafm

    src = xafm.open(SAMPLE).afm.remove_plane().values.astype(np.float32)
    reps = -(-size // min(src.shape[1:]))
    tiled = np.tile(src, (1, reps, reps))[:, :size, :size]
    return np.ascontiguousarray(np.resize(tiled, (n, size, size)))


def synthetic_stack(n: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    out = np.empty((n, size, size), np.float32)
    for a in range(0, n, 64):
        b = min(n, a + 64)
        out[a:b] = rng.standard_normal((b - a, size, size), dtype=np.float32).cumsum(axis=2) * 0.05
        out[a:b] += rng.standard_normal((b - a, size, size), dtype=np.float32) * 0.1
    return out


def _codec() -> Any:
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")


def zarr_write(data: Any, path: Path, chunks: tuple[int, int, int], levels: int) -> None:
    """zarr-python alone: the same arrays as xafm's (no NGFF metadata), every level."""
    import zarr

    from xafm.formats.omezarr.reduce import downsample_block

    g = zarr.open_group(str(path), mode="w-")
    shapes = [(data.shape[0], data.shape[1] >> k, data.shape[2] >> k) for k in range(levels)]
    arrays = [
        g.create_array(str(k), shape=s, dtype=data.dtype, chunks=(chunks[0], min(chunks[1], s[1]), min(chunks[2], s[2])), compressors=_codec(),
                       fill_value=float("nan"), dimension_names=["t", "y", "x"], config={"write_empty_chunks": True})
        for k, s in enumerate(shapes)
    ]

    def down(x: Any) -> Any:
        return downsample_block(x[:, : x.shape[1] // 2 * 2, : x.shape[2] // 2 * 2], "mean", x.dtype)

    if isinstance(data, np.ndarray):
        lvl = data
        for k, a in enumerate(arrays):
            if k:
                lvl = down(lvl)
            a[:] = lvl
        return
    import dask.array as dsa

    lvls = [data]
    for _ in range(1, levels):
        prev = lvls[-1]
        lvls.append(prev.map_blocks(down, chunks=(prev.chunks[0], (prev.shape[1] // 2,), (prev.shape[2] // 2,)), dtype=prev.dtype))
    dsa.store(lvls, arrays, lock=False)


def xafm_write(da: Any, path: Path, levels: int) -> None:
    from xafm.formats import omezarr

    omezarr.write(da, path, levels=levels, fsync=False)


def _timed(fn: Any, *args: Any) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def xafm_read(path: Path) -> np.ndarray:
    import xafm

    return xafm.open(path).values


def zarr_read(path: Path) -> np.ndarray:
    import zarr

    return zarr.open_array(str(path / "0"), mode="r")[:]


_OPEN_XAFM = r"""
import sys, time, json
import xafm
before = set(sys.modules)
t0 = time.perf_counter()
da = xafm.open(sys.argv[1], lazy=True)  # the open, no values read (zarr's side reads none)
dt = time.perf_counter() - t0
new = sorted(set(sys.modules) - before)
flag = sorted({m.split(".")[0] for m in new if m.split(".")[0] in ("pydantic", "ome_zarr_models", "yaozarrs", "matplotlib", "dask", "napari", "PIL")})
print(json.dumps({"seconds": dt, "modules": len(new), "heavy": flag}))
"""
_OPEN_ZARR = r"""
import sys, time, json
t0 = time.perf_counter()
import zarr
g = zarr.open_group(sys.argv[1], mode="r")
a = g["0"]
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def open_times(path: Path) -> tuple[float, float, dict]:
    got = {}
    for name, code in (("xafm", _OPEN_XAFM), ("zarr", _OPEN_ZARR)):
        out = subprocess.run([sys.executable, "-c", code, str(path)], check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        got[name] = json.loads(out.stdout.strip().splitlines()[-1])
    return got["xafm"]["seconds"], got["zarr"]["seconds"], got["xafm"]


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=1.5)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--levels", type=int, default=LEVELS)
    ap.add_argument("--stacks", default="real,synthetic")
    ap.add_argument("--kinds", default="numpy,dask", help="inputs of the writes (numpy, dask)")
    ap.add_argument("--writes-only", action="store_true", help="only the writes (no read, no first open)")
    ap.add_argument("--folder", help="where the stores are written (default: a temporary folder)")
    ap.add_argument("--zarrs", action="store_true", help="both sides on the zarrs codec pipeline (pip install zarrs)")
    ap.add_argument("--pipelines", default=None,
                    help="writes interleaved on several codec pipelines, e.g. 'default,zarrs' (each round runs both sides on each)")
    args = ap.parse_args(argv)
    import dask
    import dask.array as dsa
    import zarr

    pipelines = args.pipelines.split(",") if args.pipelines else [None]
    if args.zarrs or "zarrs" in pipelines:
        import zarrs  # noqa: F401  (MIT; Rust codecs, chunks encoded in parallel)
    if args.zarrs:
        zarr.config.set({"codec_pipeline.path": PIPELINES["zarrs"]})

    import xafm
    from xafm.formats.omezarr import default_chunks

    n = max(1, int(args.gib * 2**30 // (args.size * args.size * 4)))
    folder = Path(tempfile.mkdtemp(prefix="xafm-omezarr-bench-", dir=args.folder))
    rows: list[dict] = []
    try:
        for name in args.stacks.split(","):
            data = real_stack(n, args.size) if name == "real" else synthetic_stack(n, args.size)
            chunks = default_chunks(data.shape, data.dtype)
            times = np.arange(n) * 0.01
            for kind in args.kinds.split(","):
                best = {(pipe, who): np.inf for pipe in pipelines for who in ("xafm", "zarr")}
                for r in range(args.rounds):
                    order = ("xafm", "zarr") if r % 2 == 0 else ("zarr", "xafm")
                    for pipe in pipelines if r % 2 == 0 else pipelines[::-1]:
                        for who in order:
                            p = folder / f"{who}.ome.zarr"
                            shutil.rmtree(p, ignore_errors=True)
                            os.sync()  # untimed: no call pays for the write-back of another's pages
                            with dask.config.set(scheduler="threads"), zarr.config.set({"codec_pipeline.path": PIPELINES[pipe]} if pipe else {}):
                                src = data if kind == "numpy" else dsa.from_array(data, chunks=chunks)
                                if who == "xafm":
                                    s = _timed(xafm_write, xafm.stack(src, pixel_size_nm=1.0, times=times), p, args.levels)
                                else:
                                    s = _timed(zarr_write, src, p, chunks, args.levels)
                            best[pipe, who] = min(best[pipe, who], s)
                            print(json.dumps({"stack": name, "work": f"write {kind}", "pipeline": pipe, "who": who, "round": r, "seconds": round(s, 3)}), flush=True)
                for pipe in pipelines:
                    rows.append({"stack": name, "work": f"write {kind} ({args.levels} levels)" + (f" [{pipe}]" if pipe else ""),
                                 "xafm": best[pipe, "xafm"], "zarr": best[pipe, "zarr"]})
            # the stores of the last round are kept: xafm's for reading, both the same arrays
            xp, zp = folder / "xafm.ome.zarr", folder / "zarr.ome.zarr"
            if args.writes_only:
                same = all(np.array_equal(zarr.open_array(str(xp / str(k)))[:], zarr.open_array(str(zp / str(k)))[:], equal_nan=True) for k in range(args.levels))
                print(json.dumps({"stack": name, "same_arrays_as_zarr": same}), flush=True)
                del data
                continue
            same = all(np.array_equal(zarr.open_array(str(xp / str(k)))[:], zarr.open_array(str(zp / str(k)))[:], equal_nan=True) for k in range(args.levels))
            best = {"xafm": np.inf, "zarr": np.inf}
            for r in range(args.rounds):
                order = ("xafm", "zarr") if r % 2 == 0 else ("zarr", "xafm")
                for who in order:
                    s = _timed(xafm_read if who == "xafm" else zarr_read, xp)
                    best[who] = min(best[who], s)
            rows.append({"stack": name, "work": "read level 0 whole", **best, "same_arrays_as_zarr": same})
            print(json.dumps(rows[-1]), flush=True)
            best = {"xafm": np.inf, "zarr": np.inf}
            info: dict = {}
            for _ in range(args.rounds):
                x, z, info = open_times(xp)
                best["xafm"], best["zarr"] = min(best["xafm"], x), min(best["zarr"], z)
            rows.append({"stack": name, "work": "first open (fresh process)", **best, "modules": info["modules"], "heavy_imports": info["heavy"]})
            print(json.dumps(rows[-1]), flush=True)
            del data
            shutil.rmtree(folder / "xafm.ome.zarr", ignore_errors=True)
            shutil.rmtree(folder / "zarr.ome.zarr", ignore_errors=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\n{n} frames of {args.size}x{args.size} float32 ({n * args.size * args.size * 4 / 2**30:.2f} GiB), {args.rounds} rounds, "
          f"{os.cpu_count()} cpus, Python {platform.python_version()}, zarr {zarr.__version__}"
          + (" (zarrs codec pipeline)" if args.zarrs else ""))
    print("| stack | work | xafm (s) | zarr-python (s) | ratio |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['stack']} | {row['work']} | {row['xafm']:.3f} | {row['zarr']:.3f} | {row['xafm'] / row['zarr']:.2f} |")
    return rows


if __name__ == "__main__":
    main()
