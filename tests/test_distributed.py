"""Every writer and the lazy readers under a dask.distributed cluster of worker processes.

One two-worker ``LocalCluster`` (processes, one thread each) serves the module. Each
writer writes a dask-backed stack (read lazily from an HDF5 bundle, so the readers' lazy
arrays travel to the workers too) while the client is active, and the result is compared
with the same write on the local threaded scheduler.
"""

from __future__ import annotations

import logging

import dask
import numpy as np
import pytest
from distributed import Client, LocalCluster, get_task_stream

import xafm
from xafm import animation, render
from xafm.core import blocks as _output
from xafm.core import conventions
from xafm.formats import omezarr

WRITERS = {
    "h5": ("to_h5", ".h5", {}),
    "npz": ("to_npz", ".npz", {}),
    "tif": ("to_ome_tiff", ".ome.tif", {}),
    "zarr": ("to_ome_zarr", ".ome.zarr", {"levels": 2, "chunks": (2, 16, 16)}),
}
SHAPE = (10, 40, 48)


@pytest.fixture(scope="module")
def client():
    with LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None, silence_logs=logging.ERROR
    ) as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """An HDF5 bundle with masks, layers and per-frame metadata, and its values."""
    rng = np.random.default_rng(7)
    data = rng.normal(size=SHAPE).astype(np.float32)
    da = xafm.stack(
        data,
        pixel_size_nm=2.5,
        times=np.arange(SHAPE[0]) * 0.05,
        frame_metadata=[{"line_rate": 1000.0 + i, "scan_direction": "up"} for i in range(SHAPE[0])],
        masks={"high": data > 1.0},
        layers={"raw": data * 3},
    )
    path = tmp_path_factory.mktemp("src") / "source.h5"
    with dask.config.set(scheduler="threads"):
        da.afm.to_h5(path)
    return path, data


def write(da, fmt, path):
    method, _, kw = WRITERS[fmt]
    if fmt == "zarr":  # the accessor method is wired separately; call the format module
        return omezarr.write(da, path, **kw)
    return getattr(da.afm, method)(path, **kw)


class Pulls:
    """Records what each ``Client.get`` (one dask compute) brings back to the client."""

    def __init__(self, monkeypatch):
        self.sizes: list[int] = []
        original = Client.get

        def get(client_self, *args, **kwargs):
            out = original(client_self, *args, **kwargs)
            self.sizes.append(_nbytes(out))
            return out

        monkeypatch.setattr(Client, "get", get)


def _nbytes(obj) -> int:
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(o) for o in obj)
    return 0


def assert_same(a, b):
    assert a.dims == b.dims and a.dtype == b.dtype
    np.testing.assert_array_equal(a.values, b.values)
    for name in b.coords:
        np.testing.assert_array_equal(np.asarray(a.coords[name].values), np.asarray(b.coords[name].values))
    strip = lambda attrs: {k: v for k, v in attrs.items() if k != conventions.PROVENANCE_ATTR}  # noqa: E731
    assert strip(a.attrs).keys() == strip(b.attrs).keys()
    for k, v in strip(b.attrs).items():
        np.testing.assert_array_equal(a.attrs[k], v)
    pa, pb = a.afm.provenance, b.afm.provenance
    assert [r["type"] for r in pa] == [r["type"] for r in pb]
    assert pa[-2]["format"] == pb[-2]["format"]


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_writer_on_cluster_matches_threaded(fmt, client, source, tmp_path, monkeypatch):
    path, data = source
    suffix = WRITERS[fmt][1]
    monkeypatch.setattr(_output, "BLOCK_BYTES", 3 * SHAPE[1] * SHAPE[2] * 4)  # three frames a block
    pulls = Pulls(monkeypatch)
    lazy = xafm.open(path, chunks={"time": 3})
    with get_task_stream(client) as ts:
        out = write(lazy, fmt, tmp_path / f"cluster{suffix}")
    workers = {t["worker"] for t in ts.data}
    assert workers and workers <= set(client.scheduler_info()["workers"])
    with dask.config.set(scheduler="threads"):
        write(xafm.open(path, chunks={"time": 3}), fmt, tmp_path / f"local{suffix}")
    on_cluster, local = xafm.open(out), xafm.open(tmp_path / f"local{suffix}")
    assert_same(on_cluster, local)
    np.testing.assert_array_equal(on_cluster.values, data)
    assert pulls.sizes, "the writer must have computed on the cluster"
    frame = SHAPE[1] * SHAPE[2] * 4
    if fmt == "zarr":
        # written on the workers: only summaries come back, min/max pairs and the z-scale's
        # histogram (occupied bins: a uint32 key and an int64 count each, of 2**19 at most),
        # whose size does not grow with the stack (on this tiny one it exceeds a frame)
        from xafm.core import percentiles

        assert max(pulls.sizes) < 12 * percentiles._KEYS + 4096
        assert sum(pulls.sizes) < 12 * percentiles._KEYS * 8
        names = [t["key"][0] if isinstance(t["key"], tuple) else t["key"] for t in ts.data]
        # a write task per block of each stored array (the levels above 0 are written by
        # the same tasks, from the block in hand)
        assert sum(str(n).startswith("xafm-zarr-write") for n in names) >= len(lazy.chunks[0])
        np.testing.assert_allclose(xafm.open(out, level=1).values, xafm.open(tmp_path / f"local{suffix}", level=1).values)
    else:
        # one writer fed block by block: never the whole stack at once
        assert len(pulls.sizes) >= 4 and max(pulls.sizes) <= 3 * frame < data.nbytes


def test_zarr_append_on_cluster(client, source, tmp_path):
    path, data = source
    lazy = xafm.open(path, chunks={"time": 4})
    store = tmp_path / "grow.ome.zarr"
    omezarr.write(lazy.isel(time=slice(0, 5)), store, levels=2, chunks=(3, 16, 16))
    omezarr.write(lazy.isel(time=slice(5, None)), store, mode="a", append_dim="time")
    back = xafm.open(store)
    np.testing.assert_array_equal(back.values, data)
    np.testing.assert_array_equal(back.afm.masks["high"].values, data > 1.0)
    assert back.afm.frame_metadata == xafm.open(path).afm.frame_metadata


def test_lazy_readers_compute_on_workers(client, source, tmp_path):
    """Every lazy reader's graph pickles to the workers (no open handles) and computes there."""
    path, data = source
    eager = xafm.open(path)
    paths = [path]
    with dask.config.set(scheduler="threads"):
        for fmt in ("npz", "tif", "zarr"):
            paths.append(write(eager, fmt, tmp_path / f"s{WRITERS[fmt][1]}"))
    for p in paths:
        lazy = xafm.open(p, chunks={"time": 2})
        with get_task_stream(client) as ts:
            values = client.compute(lazy.data).result()
            mask = client.compute(lazy.afm.masks["high"].data).result()
        assert ts.data, p
        np.testing.assert_array_equal(values, data)
        np.testing.assert_array_equal(mask, data > 1.0)


def test_iter_blocks_streams_under_distributed(client, source):
    path, data = source
    lazy = xafm.open(path, chunks={"time": 2})
    blocks = list(_output.iter_blocks(lazy, target_bytes=4 * SHAPE[1] * SHAPE[2] * 4))
    assert [(a, b) for a, b, _ in blocks] == [(0, 4), (4, 8), (8, 10)]
    np.testing.assert_array_equal(np.concatenate([blk for *_, blk in blocks]), data)


# --------------------------------------------------------------------------------------
# animation writers (xafm.animation): one writer fed block by block
# --------------------------------------------------------------------------------------
ANIMATIONS = {
    "gif": (animation.to_gif, "movie.gif", {"fps": 10}),
    "video": (animation.to_video, "movie.mp4", {"fps": 10}),
    "frames": (animation.to_frames, "frames", {}),
}


def _pixels(path):
    """What an animated export shows, decoded (the files themselves differ in the
    provenance they carry: paths and times)."""
    if path.is_dir():
        from PIL import Image

        return [np.asarray(Image.open(p)) for p in sorted(path.iterdir())]
    if path.suffix == ".gif":
        from PIL import Image, ImageSequence

        with Image.open(path) as im:
            return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(im)]
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    next(reader)  # the metadata
    return [np.frombuffer(f, np.uint8) for f in reader]


@pytest.mark.parametrize("kind", list(ANIMATIONS))
def test_animation_writer_on_cluster_matches_threaded(kind, client, source, tmp_path, monkeypatch):
    path, data = source
    func, name, kw = ANIMATIONS[kind]
    frame = SHAPE[1] * SHAPE[2] * 4
    monkeypatch.setattr(render, "RENDER_BLOCK_BYTES", 3 * frame)
    monkeypatch.setattr(_output, "BLOCK_BYTES", 3 * frame)
    pulls = Pulls(monkeypatch)
    with get_task_stream(client) as ts:
        out = func(xafm.open(path, chunks={"time": 3}), tmp_path / f"cluster-{name}", **kw)
    assert ts.data and pulls.sizes
    assert len(pulls.sizes) >= 4 and max(pulls.sizes) <= 3 * frame < data.nbytes
    with dask.config.set(scheduler="threads"):
        local = func(xafm.open(path, chunks={"time": 3}), tmp_path / f"local-{name}", **kw)
    got, want = _pixels(out), _pixels(local)
    assert len(got) == len(want) == SHAPE[0]
    same = [bool(np.array_equal(a, b)) for a, b in zip(got, want)]  # booleans: no multi-MB assertion diff
    assert all(same), f"frames {[i for i, ok in enumerate(same) if not ok]} differ"


def test_a_file_replaced_under_a_cluster_fails_the_compute(client, tmp_path):
    """The workers check the file they open against the identity the client recorded at
    open (docs/guarantees.md, "Reading while a file is replaced"): a replaced input fails
    the computation, it never gives the new file's values."""
    data = np.arange(4 * 6 * 5, dtype=np.float32).reshape(4, 6, 5)
    path = xafm.stack(data, pixel_size_nm=1.0).afm.to_h5(tmp_path / "s.h5")
    lazy = xafm.open(path, chunks={"time": 1})
    with get_task_stream(client) as ts:
        np.testing.assert_array_equal(lazy.values, data)
    assert ts.data  # read on the workers
    xafm.stack(data + 100, pixel_size_nm=1.0).afm.to_h5(tmp_path / "new.h5")
    (tmp_path / "new.h5").replace(path)
    with pytest.raises(xafm.FileChangedError, match="replaced"):
        _ = lazy.values
