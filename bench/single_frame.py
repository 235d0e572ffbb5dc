"""Benchmark: fetching single frames, as a notebook or a viewer does (issue 16, "Single frames").

Run from the project root: ``python -m bench.single_frame [--rounds 5 --frames 50]``.

For each file, ``--frames`` random frames (one seeded draw per file, the same for every
method) are fetched one at a time, in interleaved rounds (every method once per round, in
turn, the order reversed every other round), and the median over rounds of the time per
fetch is printed; each ratio is the median over rounds of the ratio within a round:

* ``reopen``: the raw library reopening the file for every frame (h5py, zipfile + numpy,
  tifffile, zarr, a memory map, nd2), doing what xafm's reader does underneath (the same
  bytes, the same scaling) and no more;
* ``open``: the raw library with the file kept open (memory map, open h5py dataset, ...);
* ``lazy``: ``xafm.open(path, lazy=True)`` once, then ``da.isel(time=i).values``;
* ``dask``: ``xafm.open(path, chunks={})`` once, then ``da.isel(time=i).values``;
* ``napari``: what xafm's napari reader gives napari for that stack
  (:class:`xafm.napari_plugin.arrays.FrameArray`), indexed ``arr[i]`` as a viewer does: the
  lazy stack's variable indexed without the DataArray's coordinates;
* ``in memory``: ``xafm.open(path)`` (eager) once, then ``da.isel(time=i).values``: what
  xarray's ``isel`` itself costs with every coordinate, the floor of any path through it.

``lazy/reopen`` is the issue's target (at most 2); ``floor`` is ``in memory/reopen``. For OME-TIFF files the issue's own
baseline is added, ``tifffile reopen`` (``tifffile.TiffFile(path).pages[i].asarray()`` per
fetch, which walks the IFDs up to page ``i``); ``reopen`` stays the stricter memory map
where the frames lie uncompressed in one block, and is tifffile for other tools' files. ``first open`` is measured in a fresh
process: ``import xafm`` then ``xafm.open(path, lazy=True)`` and the first frame.

Files: a 2000 x 256 x 256 float32 stack made by tiling the levelled frames of the real
``asd_v0_sample.asd`` (written by xafm as h5, npz, deflated npz, OME-TIFF, OME-Zarr, kept
in ``--data`` between runs), a frame folder of copies of the real ``sample_0.jpk``, and the
real sample files of every lazy format (``/work/shared/data``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
ASD = SHARED / "afm" / "asd_v0_sample.asd"
SYNTHETIC = ("s.h5", "s.npz", "sz.npz", "s.ome.tif", "s.ome.zarr")
#: Real samples whose frames are read lazily (one per lazy format the shared data has).
REAL = (
    "afm/asd_v0_sample.asd", "afm/asd_sample_0.asd", "afm/sample_0.h5-jpk", "afm/sample_0.jpk",
    "afm/bruker_v94_fastscan.spm", "afm/IgorIBWReader_P0089OP0027.ibw", "afm/pyspm_test.sxm",
    "afm/nanosurf_driveafm.nid", "afm/nanosurf_wavemode.nhf", "afm/sample_0.stp", "afm/ntmdt_current_map.mdt",
    "afm/sample_0_1.topostats", "afm/park_example.tiff", "other/cluster.nd2", "other/multi-channel.ome.tif",
    "other/blobs_image_v04.ome.zarr",
)

Fetch = Callable[[int], Any]


# --------------------------------------------------------------------------------------
# the files
# --------------------------------------------------------------------------------------
def make_synthetic(folder: Path, n: int = 2000, size: int = 256) -> None:
    """The real-derived stack (the levelled sample's frames in turn, each tiled) in each
    format xafm writes lazily readable; files already there are kept."""
    import xafm

    if all((folder / name).exists() for name in SYNTHETIC):
        return
    src = np.asarray(xafm.open(ASD).afm.remove_plane().afm.align_rows().values, dtype=np.float32)
    m, ny, nx = src.shape
    tiles = np.stack([np.tile(f, (-(-size // ny), -(-size // nx)))[:size, :size] for f in src])
    data = tiles[np.arange(n) % m]
    da = xafm.stack(data, pixel_size_nm=0.5, times=np.arange(n) * 0.05, frame_metadata={"line_rate": np.arange(n, dtype=float)})
    writers = {
        "s.h5": lambda p: da.afm.to_h5(p, fsync=False), "s.npz": lambda p: da.afm.to_npz(p, fsync=False),
        "sz.npz": lambda p: da.afm.to_npz(p, compress=True, fsync=False), "s.ome.tif": lambda p: da.afm.to_ome_tiff(p, fsync=False),
        "s.ome.zarr": lambda p: da.afm.to_ome_zarr(p, fsync=False),
    }
    for name, write in writers.items():
        if not (folder / name).exists():
            write(folder / name)


def make_folder(folder: Path, n: int = 20) -> Path:
    """A frame folder: ``n`` copies of the real ``sample_0.jpk``."""
    out = folder / "jpk_frames"
    if not out.exists():
        tmp = folder / "jpk_frames.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for i in range(n):
            shutil.copyfile(SHARED / "afm" / "sample_0.jpk", tmp / f"frame_{i:03d}.jpk")
        tmp.rename(out)
    return out


# --------------------------------------------------------------------------------------
# the raw library, doing what xafm's reader does underneath
# --------------------------------------------------------------------------------------
def _source(da: Any) -> Any:
    """The xafm LazyArray under a lazily opened stack's xarray wrappers."""
    from xafm.core.lazy import DimView, LazyArray

    arr = da.variable._data
    while not isinstance(arr, LazyArray):
        arr = arr.array
    while isinstance(arr, DimView) or type(arr).__name__ in ("Squeezed", "Reshaped", "RawOrPages3D"):
        arr = next(getattr(arr, a) for a in ("base", "full", "array") if hasattr(arr, a))
    return arr


def _dim_view(da: Any) -> Any:
    """The DimView under a lazily opened stack's xarray wrappers (None if there is none)."""
    from xafm.core.lazy import DimView

    arr = da.variable._data
    while hasattr(arr, "array") and not isinstance(arr, DimView):
        arr = arr.array
    return arr if isinstance(arr, DimView) else None


def tifffile_reopen(path: str, da: Any) -> Fetch | None:
    """The issue's own OME-TIFF baseline: tifffile reopening the file for every frame,
    ``tifffile.TiffFile(path).pages[page].asarray()`` (the page of frame ``i``, plane 0 of
    the other dims, as the bench reads them)."""
    import tifffile

    if not path.endswith((".ome.tif", ".ome.tiff")):
        return None
    src, view = _source(da), _dim_view(da)
    if type(src).__name__ == "TiffPlanesArray" and view is not None:
        n_lead = len(src.lead_shape)
        lead_dims, page_dims = view.base_dims[:n_lead], view.base_dims[n_lead:]

        def where(i: int) -> tuple[str, int]:
            lead = tuple(i if d == "time" else view.fixed.get(d, 0) for d in lead_dims)
            plane = src.planes[int(np.ravel_multi_index(lead, src.lead_shape))]
            assert plane is not None
            return plane

        page_key = tuple(view.fixed.get(d, slice(None)) if d not in ("y", "x") else slice(None) for d in page_dims)

        def planes_reopen(i: int) -> np.ndarray:
            file, page = where(i)
            with tifffile.TiffFile(file, _multifile=False) as tf:
                return tf.pages[page].asarray().reshape(src.page_shape)[page_key]

        return planes_reopen

    def pages_reopen(i: int) -> np.ndarray:  # xafm's own files: page i is frame i
        with tifffile.TiffFile(path, _multifile=False) as tf:
            return tf.pages[i].asarray()

    return pages_reopen


def _member_offset(path: str, name: str) -> tuple[int, int]:
    """Where a stored zip member's ``.npy`` data starts, and its header length: zipfile's
    central directory, the member's local header, numpy's ``.npy`` header (one open)."""
    with open(path, "rb") as raw:
        info = zipfile.ZipFile(raw).getinfo(name)
        raw.seek(info.header_offset + 26)
        n, m = np.frombuffer(raw.read(4), "<u2")
        start = info.header_offset + 30 + int(n) + int(m)
        raw.seek(start)
        version = np.lib.format.read_magic(raw)
        (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(raw)
        return raw.tell(), raw.tell() - start


def raw_methods(path: str, da: Any) -> tuple[str, Fetch | None, Fetch | None]:
    """(library, reopen-per-frame fetch, file-kept-open fetch) for the reader under ``da``."""
    src = _source(da)
    kind = type(src).__name__
    if kind == "RawFramesArray":
        range_scaled = hasattr(src, "z_range")  # WSxM 16-bit counts: scaled so their range spans z_range

        def convert(v: np.ndarray) -> np.ndarray:
            if src.flip_y:
                v = v[::-1]
            if src.flip_x:
                v = v[:, ::-1]
            if src.scale is None and src.add is None and not range_scaled:
                return np.array(v, dtype=src.dtype)
            out = np.multiply(v, src.dtype.type(src.scale if src.scale is not None else 1), dtype=src.dtype)
            if src.add is not None:
                out += src.dtype.type(src.add)
            if range_scaled:  # the factor from the frame's own range, as the reader finds it
                lo, hi = float(v.min()), float(v.max())
                out *= src.z_range / (hi - lo) if hi > lo else 1.0
            return out

        shape = src.frame_shape

        def mm_reopen(i: int) -> np.ndarray:
            mm = np.memmap(src.path, dtype=src.raw_dtype, mode="r", offset=src.offset + i * src.frame_stride, shape=shape)
            return convert(mm)

        whole = np.memmap(src.path, dtype=np.uint8, mode="r")
        view = np.ndarray((src.shape[0],) + shape, dtype=src.raw_dtype, buffer=whole, offset=src.offset,
                          strides=(src.frame_stride, shape[1] * src.raw_dtype.itemsize, src.raw_dtype.itemsize))
        if path.endswith(".npz"):
            member = "data.npy"

            def zip_reopen(i: int) -> np.ndarray:
                # zipfile finds the member (its seek reads through a stored member in
                # Python 3.11), a memory map reads the frame
                start, _ = _member_offset(src.path, member)
                mm = np.memmap(src.path, dtype=src.raw_dtype, mode="r", offset=start + i * src.frame_bytes, shape=shape)
                return convert(mm)

            return "zipfile + memmap", zip_reopen, lambda i: convert(view[i])
        return "memmap", mm_reopen, lambda i: convert(view[i])
    if kind == "DeflatedFramesArray":
        def inflate_reopen(i: int) -> np.ndarray:
            with zipfile.ZipFile(src.path) as zf, zf.open(src.member) as fh:
                fh.seek(src.header_len + i * src.frame_bytes)
                return np.frombuffer(fh.read(src.frame_bytes), src.raw_dtype).reshape(src.shape[1:]).copy()

        return "zipfile (inflates from the start)", inflate_reopen, None
    if kind in ("H5DatasetArray", "H5FrameArray", "H5JPKFramesArray"):
        import h5py

        name = getattr(src, "name", None) or getattr(src, "dataset", None)
        if kind == "H5JPKFramesArray":
            rows, cols = src.shape[1:]

            def jpk_frame(ds: Any, i: int) -> np.ndarray:
                v = ds[:, i].reshape(rows, cols)[::-1] if src.flip_y else ds[:, i].reshape(rows, cols)
                out = np.multiply(v, src.multiplier, dtype=np.float64)
                out += src.offset
                return out

            f = h5py.File(src.path, "r")
            ds = f[name]

            def h5jpk_reopen(i: int) -> np.ndarray:
                with h5py.File(src.path, "r") as g:
                    return jpk_frame(g[name], i)

            return "h5py", h5jpk_reopen, lambda i: jpk_frame(ds, i)

        def selection(i: int) -> Any:
            if kind == "H5FrameArray":  # TopoStats: a 2-D image (or one plane of a 3-D one) as one frame
                return (slice(None), slice(None)) + ((src.plane,) if src.plane is not None else ())
            return i

        def h5_reopen(i: int) -> np.ndarray:
            with h5py.File(src.path, "r") as g:
                return g[name][selection(i)]

        f = h5py.File(src.path, "r")
        ds = f[name]
        return "h5py", h5_reopen, lambda i: ds[selection(i)]
    if kind == "NhfImageArray":  # Nanosurf: a flat dataset of lines, the last stored line on top
        import h5py

        def nhf_frame(ds: Any) -> np.ndarray:
            rows = np.asarray(ds[: src.lines * src.points]).reshape(src.lines, src.points)[::-1]
            return rows.astype(np.float64) * src.scale + src.add

        def nhf_reopen(i: int) -> np.ndarray:
            with h5py.File(src.path, "r") as g:
                return nhf_frame(g[src.dataset])

        f = h5py.File(src.path, "r")
        ds = f[src.dataset]
        return "h5py", nhf_reopen, lambda i: nhf_frame(ds)
    if kind in ("TiffPagesArray", "JPKPageArray"):
        import tifffile

        def page_of(i: int) -> int:
            return int(src.page_indices[i]) if kind == "TiffPagesArray" else src.page

        def scaled(v: np.ndarray) -> np.ndarray:  # a JPK page's flip and linear scaling
            if kind == "TiffPagesArray":
                return v
            out = np.multiply(v[::-1] if src.flip_y else v, src.multiplier, dtype=np.float64)
            out += src.offset
            return out

        def tiff_reopen(i: int) -> np.ndarray:
            with tifffile.TiffFile(src.path, _multifile=False) as tf:
                return scaled(tf.pages[page_of(i)].asarray())

        tf = tifffile.TiffFile(src.path, _multifile=False)
        return "tifffile", tiff_reopen, lambda i: scaled(tf.pages[page_of(i)].asarray())
    if kind == "ZarrArraySource":
        import zarr

        where = os.path.join(src.path, src.component)

        def zarr_reopen(i: int) -> np.ndarray:
            return zarr.open_array(where, mode="r")[i]

        arr = zarr.open_array(where, mode="r")
        return "zarr", zarr_reopen, lambda i: arr[i]
    if kind == "ND2FramesArray":
        import nd2

        loop = src.loop_shape  # (time, z, ...): the bench reads z = 0 and the first channel

        def nd2_frame(f: Any, i: int) -> np.ndarray:
            seq = int(np.ravel_multi_index((i,) + (0,) * (len(loop) - 1), loop))
            # a copy: read_frame's array is a view of the file's memory map, gone at close
            v = np.array(f.read_frame(seq)).reshape(src.n_channels, src.ny, src.nx, src.n_comps)
            return v[0, :, :, 0]

        def nd2_reopen(i: int) -> np.ndarray:
            with nd2.ND2File(src.path) as f:
                return nd2_frame(f, i)

        f = nd2.ND2File(src.path)
        return "nd2", nd2_reopen, lambda i: nd2_frame(f, i)
    if kind == "FolderFramesArray":
        import tifffile

        def page_array(var: Any) -> Any:  # the JPK page under a frame file's lazy stack
            arr = var._data
            while hasattr(arr, "array"):
                arr = arr.array
            return arr

        pages = [page_array(v) for v in src.stacks]

        def folder_reopen(i: int) -> np.ndarray:  # what the .jpk baseline does, in file i
            pa = pages[i]
            with tifffile.TiffFile(src.paths[i], _multifile=False) as tf:
                v = tf.pages[pa.page].asarray()
            out = np.multiply(v[::-1] if pa.flip_y else v, pa.multiplier, dtype=np.float64)
            out += pa.offset
            return out

        return "tifffile (frame i's file, its page, scaled)", folder_reopen, None
    return kind, None, None


# --------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------
def first_open(path: str) -> tuple[float, float]:
    """(import + open, first frame) seconds in a fresh process."""
    code = (
        "import time, sys; t0 = time.perf_counter(); import xafm; "
        "da = xafm.open(sys.argv[1], lazy=True); t1 = time.perf_counter(); "
        "da.isel(time=0).values; t2 = time.perf_counter(); print(t1 - t0, t2 - t1)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, env=env, check=True).stdout.split()
    return float(out[0]), float(out[1])


def bench_file(path: str, n_fetch: int, rounds: int, rng: np.random.Generator) -> dict[str, Any]:
    import warnings

    import xafm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lazy = xafm.open(path, lazy=True)
        dask = xafm.open(path, chunks={})
        eager = xafm.open(path)
    if "time" not in lazy.dims:
        return {}
    lazy_extra = {d: 0 for d in lazy.dims if d not in ("time", "y", "x")}  # z, channel: the first
    lazy, dask, eager = lazy.isel(lazy_extra), dask.isel(lazy_extra), eager.isel(lazy_extra)
    n = lazy.sizes["time"]
    idx = [int(i) for i in rng.integers(0, n, n_fetch)]
    library, reopen, kept = raw_methods(path, lazy)
    from xafm.napari_plugin.arrays import FrameArray

    viewer = FrameArray(lazy)
    tiff = tifffile_reopen(path, lazy)
    if reopen is None and tiff is not None:  # another tool's OME-TIFF: tifffile is the raw library
        library, reopen, tiff = "tifffile", tiff, None
    methods: dict[str, Fetch | None] = {
        "reopen": reopen, "open": kept, "tifffile": tiff,
        "lazy": lambda i: lazy.isel(time=i).values,
        "dask": lambda i: dask.isel(time=i).values,
        "eager": lambda i: eager.isel(time=i).values,  # xarray's own isel, values in memory: the floor
        "napari": lambda i: viewer[i],  # what the napari reader hands napari, indexed as napari does
    }
    slow = {"reopen": 5} if "inflates" in library else {}  # inflating from the start: seconds a frame
    for name, fetch in methods.items():  # warm up, and check every method reads the same values
        if fetch is not None:
            got = np.asarray(fetch(idx[0]), dtype=np.float64)
            want = np.asarray(lazy.isel(time=idx[0]).values, dtype=np.float64)
            if got.shape == want.shape and not np.allclose(got, want, equal_nan=True):
                raise AssertionError(f"{path}: {name} reads other values than xafm")
    times: dict[str, list[float]] = {k: [] for k, f in methods.items() if f is not None}
    for r in range(rounds):
        # every other round in the reverse order: the machine's speed drifts over seconds
        # (one method measured 1.7x slower in one order than in another, same process)
        for name in list(times) if r % 2 == 0 else list(times)[::-1]:
            fetch = methods[name]
            assert fetch is not None
            use = idx[: slow.get(name, len(idx))]
            t0 = time.perf_counter()
            for i in use:
                fetch(i)
            times[name].append((time.perf_counter() - t0) / len(use))
    out: dict[str, Any] = {k: statistics.median(v) for k, v in times.items()}
    # ratios within each round (methods measured next to each other), then their median
    out["ratios"] = {
        (k, base): statistics.median(a / b for a, b in zip(times[k], times[base]))
        for k in ("lazy", "dask", "eager", "napari") for base in ("reopen", "tifffile") if k in times and base in times
    }
    out["library"], out["frames"] = library, n
    out["open_s"], out["first_s"] = first_open(path)
    return out


def arguments(description: str, rounds: int) -> tuple[argparse.Namespace, list[str]]:
    """The command line shared with ``bench.single_frame_parts``, and the files it names
    (the synthetic ones made first)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "xafm-single-frame")
    ap.add_argument("--only", nargs="*", help="file names to run (default: all)")
    args = ap.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    make_synthetic(args.data)
    files = [str(args.data / s) for s in SYNTHETIC] + [str(make_folder(args.data))]
    files += [str(SHARED / r) for r in REAL if (SHARED / r).exists()]
    if args.only:
        files = [f for f in files if os.path.basename(f) in args.only]
    return args, files


def main() -> None:
    from bench.read_asd import machine

    args, files = arguments(__doc__.splitlines()[0], rounds=5)
    print(f"# {machine()}; {args.frames} random frames, median of {args.rounds} interleaved rounds; ms per fetch")
    print("| file | frames | raw library | reopen | open | lazy | dask | in memory | lazy/reopen | floor | napari/reopen | dask/reopen | tifffile reopen | lazy/tifffile | first open (import+open, s) | first frame (ms) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(16)
    for path in files:
        r = bench_file(path, args.frames, args.rounds, rng)
        if not r:
            continue

        def ms(k: str, r: dict[str, Any] = r) -> str:
            return f"{r[k] * 1e3:.3f}" if k in r else "-"

        def ratio(k: str, base: str = "reopen", r: dict[str, Any] = r) -> str:
            return f"{r['ratios'][k, base]:.2f}" if (k, base) in r["ratios"] else "-"

        print(f"| {os.path.basename(path)} | {r['frames']} | {r['library']} | {ms('reopen')} | {ms('open')} | {ms('lazy')} | {ms('dask')} | {ms('eager')} "
              f"| {ratio('lazy')} | {ratio('eager')} | {ratio('napari')} | {ratio('dask')} | {ms('tifffile')} | {ratio('lazy', 'tifffile')} | {r['open_s']:.3f} | {r['first_s'] * 1e3:.1f} |", flush=True)


if __name__ == "__main__":
    main()
