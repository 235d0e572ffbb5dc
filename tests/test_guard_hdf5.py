"""HDF5 files read only themselves, hold what they declare, and cannot hang a reader.

Three families, over every HDF5 format xafm reads (xafm's and playNano's ``.h5`` bundles,
``.h5-jpk``, ``.topostats``, ``.nhf``), each built synthetically and then mutated with h5py:

* an external link, a virtual dataset or external raw storage in place of the image data
  or of a metadata / time dataset: ``UnsafeFileError`` naming the file and what it
  references, on eager and lazy opens and from ``xafm.channels``; the referenced bytes
  never come back;
* a dataset that declares far more frames than its storage holds: ``CorruptFileError``
  ("declares N frames but stores only B bytes") with a small peak memory;
* a damaged global heap under the variable-length strings a reader reads (HDF5's C code
  loops on it): a ``CorruptFileError`` in bounded time, checked in a subprocess so that a
  hang fails the test instead of freezing the suite.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import struct
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest

import xafm
from xafm.exceptions import CorruptFileError, UnsafeFileError
from xafm.testing.h5jpk import write_h5jpk
from xafm.testing.nhf import write_nhf
from xafm.testing.playnano import write_playnano_h5
from xafm.testing.topostats import write_topostats

#: Bytes of the "other file" every reference points at; they must never be returned.
SECRET = b"SECRET-BYTES-" * 64


# --------------------------------------------------------------------------------------
# valid files of each format, and the datasets a reader reads from them
# --------------------------------------------------------------------------------------
def _own_h5(path: Path) -> Path:
    rng = np.random.default_rng(0)
    da = xafm.stack(rng.normal(size=(3, 4, 5)).astype(np.float32), pixel_size_nm=1.5)
    return da.afm.to_h5(path)


def _playnano_h5(path: Path) -> Path:
    write_playnano_h5(path, np.zeros((3, 4, 5), np.float32))
    return path


def _h5jpk(path: Path) -> Path:
    raw = np.arange(3 * 4 * 5, dtype=np.int32).reshape(3, 4, 5)
    return write_h5jpk(path, [{"name": "height", "retrace": False, "raw": raw}], start_ms=[0, 1000, 2000], end_ms=[900, 1900, 2900])


def _topostats(path: Path) -> Path:
    return write_topostats(path, np.zeros((4, 5)), original=np.ones((4, 5)))


def _nhf(path: Path) -> Path:
    raw = np.arange(20, dtype=np.int32).reshape(4, 5)
    return write_nhf(path, {"Forward": {"Topography": raw, "Error": raw}}, calibration={"Topography": (-1e-6, 1e-6, "m")})


#: format -> (suffix, writer, the image dataset, a metadata / time / second dataset it reads)
FORMATS = {
    "h5": (".h5", _own_h5, "data", "timestamps"),
    "h5-playnano": (".h5", _playnano_h5, "data", "timestamps"),
    "h5-jpk": (".h5-jpk", _h5jpk, "Measurement_000/Channel_000/Height", "Measurement_000/meta-data/start-times"),
    "topostats": (".topostats", _topostats, "image", "pixel_to_nm_scaling"),
    "nhf": (".nhf", _nhf, "measurement_0/segment_0/dataset_0", "measurement_0/segment_0/dataset_1"),
}


def _valid(tmp_path: Path, fmt: str) -> Path:
    suffix, write, _, _ = FORMATS[fmt]
    return write(tmp_path / f"{fmt}{suffix}")


def _replace(path: Path, name: str, make) -> None:
    """Replace dataset ``name`` (keeping its attributes) by what ``make(group, leaf, shape,
    dtype)`` creates."""
    with h5py.File(path, "r+") as f:
        old = f[name]
        shape, dtype, attrs = old.shape, old.dtype, dict(old.attrs)
        parent, leaf = (f[name.rsplit("/", 1)[0]], name.rsplit("/", 1)[1]) if "/" in name else (f, name)
        del parent[leaf]
        make(parent, leaf, shape, dtype)
        obj = parent.get(leaf)
        if isinstance(obj, h5py.Dataset):
            for k, v in attrs.items():
                if k not in ("DIMENSION_LIST", "REFERENCE_LIST"):
                    obj.attrs[k] = v


def _secret_file(tmp_path: Path, shape, dtype) -> Path:
    """Raw bytes of SECRET, at least as long as a dataset of ``shape``/``dtype``."""
    need = int(np.prod(shape)) * np.dtype(dtype).itemsize
    path = tmp_path / "secret.bin"
    path.write_bytes((SECRET * (need // len(SECRET) + 1))[: max(need, len(SECRET))])
    return path


def _secret_h5(tmp_path: Path, shape, dtype) -> Path:
    path = tmp_path / "other.h5"
    raw = np.frombuffer((SECRET * 64)[: int(np.prod(shape)) * np.dtype(dtype).itemsize], dtype=dtype).reshape(shape)
    with h5py.File(path, "w") as f:
        f["x"] = raw
    return path


def _external_link(tmp_path):
    def make(parent, leaf, shape, dtype):
        other = _secret_h5(tmp_path, shape, dtype)
        parent[leaf] = h5py.ExternalLink(str(other), "/x")
        return other.name

    return make, "other.h5"


def _virtual(tmp_path):
    def make(parent, leaf, shape, dtype):
        other = _secret_h5(tmp_path, shape, dtype)
        layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
        layout[...] = h5py.VirtualSource(str(other), "x", shape=shape)
        parent.create_virtual_dataset(leaf, layout)

    return make, "other.h5"


def _external_storage(tmp_path):
    def make(parent, leaf, shape, dtype):
        shape = shape or (1,)  # h5py drops external storage of a scalar
        secret = _secret_file(tmp_path, shape, dtype)
        parent.create_dataset(leaf, shape=shape, dtype=dtype, external=[(str(secret), 0, h5py.h5f.UNLIMITED)])

    return make, "secret.bin"


REFERENCES = {"external-link": _external_link, "virtual": _virtual, "external-storage": _external_storage}
ACCESSES = ("eager", "lazy", "channels")


def _access(path: Path, how: str):
    if how == "eager":
        return xafm.open(path)
    if how == "lazy":
        return xafm.open(path, chunks={}).compute()
    return xafm.channels(path)


# --------------------------------------------------------------------------------------
# a file reads only itself
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ACCESSES)
@pytest.mark.parametrize("target", ["image", "metadata"])
@pytest.mark.parametrize("ref", sorted(REFERENCES))
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_nothing_outside_the_file_is_read(tmp_path, fmt, ref, target, how):
    path = _valid(tmp_path, fmt)
    name = FORMATS[fmt][2 if target == "image" else 3]
    make, referenced = REFERENCES[ref](tmp_path)
    _replace(path, name, make)
    with pytest.raises(UnsafeFileError) as err:
        _access(path, how)
    message = str(err.value)
    assert str(path) in message and referenced in message, message
    assert "SECRET" not in message


def test_external_storage_of_etc_passwd_is_refused(tmp_path):
    """The issue's case: a bundle whose /data lives in /etc/passwd."""
    path = _own_h5(tmp_path / "x.h5")
    _replace(path, "data", lambda g, leaf, shape, dtype: g.create_dataset(leaf, shape=(1, 1, 16), dtype="u1", external=[("/etc/passwd", 0, h5py.h5f.UNLIMITED)]))
    with h5py.File(path) as f:  # the premise: h5py itself returns the file's bytes
        assert f["data"][()].tobytes()[:5] == Path("/etc/passwd").read_bytes()[:5]
    for how in ACCESSES:
        with pytest.raises(UnsafeFileError, match="/etc/passwd"):
            _access(path, how)


def test_a_group_behind_an_external_link_is_refused(tmp_path):
    """A link to a group of another file (playNano's /processed here) is refused too,
    before anything under it is read."""
    path = _playnano_h5(tmp_path / "p.h5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["g/layer"] = np.zeros((3, 4, 5), np.float32)
    with h5py.File(path, "r+") as f:
        f["processed"] = h5py.ExternalLink(str(other), "/g")
    with pytest.raises(UnsafeFileError, match=r"/processed is an external link to .*other\.h5:/g"):
        xafm.open(path)


def test_soft_links_inside_the_file_still_read(tmp_path):
    """Soft links stay within the file: a bundle whose /data is one still reads, eagerly
    and lazily (the lazy read resolves the link itself, link by link)."""
    path = _own_h5(tmp_path / "x.h5")
    expected = xafm.open(path).values
    with h5py.File(path, "r+") as f:
        f.move("data", "stored/data")
        f["data"] = h5py.SoftLink("/stored/data")
    np.testing.assert_array_equal(xafm.open(path).values, expected)
    np.testing.assert_array_equal(xafm.open(path, chunks={}).values, expected)


def test_lazy_arrays_recheck_the_dataset_they_read(tmp_path, monkeypatch):
    """A lazy array opened on a sound file refuses external storage found at read time.

    The rewrite is first seen as a change of the file (``FileChangedError``); the layout is
    checked again on the read too, for a rewrite the identity check cannot see (same size
    and time), simulated by switching that check off."""
    import xafm.core.lazy

    path = _own_h5(tmp_path / "x.h5")
    lazy = xafm.open(path, chunks={})
    secret = _secret_file(tmp_path, (3, 4, 5), np.float32)
    _replace(path, "data", lambda g, leaf, shape, dtype: g.create_dataset(leaf, shape=shape, dtype=dtype, external=[(str(secret), 0, h5py.h5f.UNLIMITED)]))
    with pytest.raises(xafm.FileChangedError):
        _ = lazy.values
    monkeypatch.setattr(xafm.core.lazy, "check_unchanged", lambda path, recorded: None)
    with pytest.raises(UnsafeFileError, match="secret.bin"):
        _ = lazy.values


# --------------------------------------------------------------------------------------
# sizes in a header are claims
# --------------------------------------------------------------------------------------
HUGE = 2**27


def _declare_frames(path: Path, name: str, axis: int, n: int) -> None:
    """Re-create dataset ``name`` chunked one frame per chunk, write its real frames, then
    declare ``n`` frames: the file stays small, its header claims ``n``."""
    with h5py.File(path, "r+") as f:
        old = f[name]
        data, attrs = old[()], dict(old.attrs)
        parent, leaf = (f[name.rsplit("/", 1)[0]], name.rsplit("/", 1)[1]) if "/" in name else (f, name)
        del parent[leaf]
        chunks = tuple(1 if i == axis else s for i, s in enumerate(data.shape))
        maxshape = tuple(None if i == axis else s for i, s in enumerate(data.shape))
        ds = parent.create_dataset(leaf, data=data, chunks=chunks, maxshape=maxshape, compression="gzip")
        for k, v in attrs.items():
            if k not in ("DIMENSION_LIST", "REFERENCE_LIST"):
                ds.attrs[k] = v
        ds.resize(n, axis=axis)


#: format -> [(dataset, frame axis)] whose frame count is inflated together
LIARS = {
    "h5": [("data", 0), ("timestamps", 0)],
    "h5-playnano": [("data", 0), ("timestamps", 0)],
    "h5-jpk": [("Measurement_000/Channel_000/Height", 1)],
}


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
@pytest.mark.parametrize("fmt", sorted(LIARS))
def test_declared_frames_are_checked_against_storage(tmp_path, fmt, lazy):
    path = _valid(tmp_path, fmt)
    for name, axis in LIARS[fmt]:
        _declare_frames(path, name, axis, HUGE)
    assert path.stat().st_size < 64 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(CorruptFileError, match=rf"declares {HUGE} frames .* but stores only \d+ bytes") as err:
            xafm.open(path, chunks={} if lazy else None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(path) in str(err.value)
    assert peak < 32 * 2**20, f"peak {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
@pytest.mark.parametrize("fmt", ["topostats", "nhf"])
def test_declared_image_size_is_checked_against_storage(tmp_path, fmt, lazy):
    """Single-image formats: an image dataset whose shape claims more than it stores."""
    path = _valid(tmp_path, fmt)
    name = FORMATS[fmt][2]
    with h5py.File(path, "r+") as f:
        shape = f[name].shape
        del f[name]
        big = (2**14, 2**14) if fmt == "topostats" else (2**28,)
        ds = f.create_dataset(name, shape=big, dtype="f8" if fmt == "topostats" else "i4", chunks=(1, 16) if fmt == "topostats" else (16,))
        ds[(0,) * len(big)] = 1
        if fmt == "nhf":
            f["measurement_0"].attrs["image_points_per_line"] = np.uint32(2**14)
            f["measurement_0"].attrs["image_number_of_lines"] = np.uint32(2**14)
            ds.attrs["name"] = "Topography"
            ds.attrs["dataset_element_type"] = np.uint32(0)
        assert shape != big
    tracemalloc.start()
    try:
        with pytest.raises(CorruptFileError, match=r"declares shape .* but stores only \d+ bytes"):
            xafm.open(path, chunks={} if lazy else None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20


def test_compressed_data_within_deflates_ratio_still_reads(tmp_path):
    """A highly compressible but honest bundle (zeros, gzip: ~1000:1 at best) reads."""
    da = xafm.stack(np.zeros((64, 64, 64), np.float32), pixel_size_nm=1.0)
    path = da.afm.to_h5(tmp_path / "zeros.h5", compression="gzip", compression_opts=9)
    assert float(xafm.open(path).sum()) == 0.0


# --------------------------------------------------------------------------------------
# xafm's own JSON: fixed-length strings (no global heap)
# --------------------------------------------------------------------------------------
def test_own_bundle_stores_json_as_fixed_length_strings(tmp_path):
    path = _own_h5(tmp_path / "x.h5")
    with h5py.File(path) as f:
        for name in ("frame_metadata_json", "provenance_json"):
            tid = f[name].id.get_type()
            assert isinstance(tid, h5py.h5t.TypeStringID) and not tid.is_variable_str(), name
            json.loads(f[name][()].decode("utf-8"))  # what playNano's loader does
        tid = f.attrs.get_id("xafm_attrs_json").get_type()
        assert not tid.is_variable_str()
        assert str(f.attrs["channel"]) == "height"  # playNano's str(); a variable-length str


def test_own_bundle_with_attrs_too_long_for_a_fixed_attribute_still_round_trips(tmp_path):
    """An attribute lives in one object-header message (64 KiB): longer xafm_attrs_json
    stays a variable-length string, read back through the bounded heap read."""
    da = xafm.stack(np.zeros((2, 3, 3), np.float32), pixel_size_nm=1.0)
    da.attrs["notes"] = "x" * 200_000
    path = da.afm.to_h5(tmp_path / "long.h5")
    with h5py.File(path) as f:
        assert f.attrs.get_id("xafm_attrs_json").get_type().is_variable_str()
    back = xafm.open(path)
    assert back.attrs["notes"] == "x" * 200_000 and back.name == "height"


# --------------------------------------------------------------------------------------
# no input hangs: damaged global heaps
# --------------------------------------------------------------------------------------
def _first_heap(data: bytes) -> tuple[int, list[tuple[int, int, int]]]:
    """Offset of the first global heap collection and its objects (offset, index, size)."""
    start = data.index(b"GCOL\x01")
    size = struct.unpack_from("<Q", data, start + 8)[0]
    objects, pos = [], start + 16
    while pos + 16 <= start + size:
        index, _, _, osize = struct.unpack_from("<HHIQ", data, pos)
        objects.append((pos, index, osize))
        if index == 0:
            break
        pos += 16 + (osize + 7) // 8 * 8
    return start, objects


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    _, objects = _first_heap(bytes(data))
    free = next(pos for pos, index, _ in objects if index == 0)
    if how == "free-space-size-0":
        struct.pack_into("<Q", data, free + 8, 0)
    elif how == "free-space-size-8":
        struct.pack_into("<Q", data, free + 8, 8)
    else:  # the first object becomes free space of size 0
        struct.pack_into("<H", data, objects[0][0], 0)
        struct.pack_into("<Q", data, objects[0][0] + 8, 0)
    path.write_bytes(bytes(data))


def _vlen_h5jpk(path: Path) -> Path:
    _h5jpk(path)
    with h5py.File(path, "r+") as f:  # JPK's text attributes as variable-length strings
        f["Measurement_000"].attrs["motion"] = "topDown"
        f["Measurement_000/Channel_000"].attrs["channel.name"] = "height"
    return path


#: (format, writer, damage) cases; each file holds variable-length strings the reader reads
HANG_CASES = [
    ("h5-playnano", _playnano_h5, "free-space-size-0"),
    ("h5-playnano", _playnano_h5, "free-space-size-8"),
    ("h5-playnano", _playnano_h5, "first-object-free-size-0"),
    ("h5-jpk", _vlen_h5jpk, "free-space-size-0"),
    ("topostats", _topostats, "free-space-size-0"),
    ("nhf", _nhf, "free-space-size-0"),
]

def _in_child(func, *args, timeout: float) -> list | None:
    """Run ``func(*args)`` (returning JSON-able values) in a forked child of the test
    process: a hang there is killed after ``timeout`` s and returns None. Forking keeps
    xafm's imports, which a fresh interpreter would pay for again (seconds on a busy machine)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 0
        try:
            os.close(r)
            with os.fdopen(w, "w") as out:
                json.dump(func(*args), out)
        except BaseException:
            code = 1
        os._exit(code)
    os.close(w)
    try:
        ready, _, _ = select.select([r], [], [], timeout)
        data = b""
        if ready:
            while chunk := os.read(r, 1 << 16):
                data += chunk
    finally:
        os.close(r)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if not ready:
        return None
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"the child failed: {status}"
    return json.loads(data)


def _open_each(paths: list[str]) -> list:
    from xafm.formats import _h5strings

    _h5strings.TIMEOUT_S = 0.3
    results = []
    for path in paths:
        t = time.monotonic()
        try:
            got = [float(xafm.open(path).sum()), xafm.channels(path)]
            results.append([path, "read", got, time.monotonic() - t])
        except xafm.XafmError as exc:
            results.append([path, type(exc).__name__, str(exc), time.monotonic() - t])
    return results


def _h5py_reads_channel(path: str) -> list:
    return [str(h5py.File(path, "r").attrs["channel"])]


def test_a_damaged_string_heap_cannot_hang_a_reader(tmp_path):
    """HDF5 loops forever on these files (the premise, checked with h5py alone); xafm
    refuses each in bounded time with a CorruptFileError naming the file. xafm's own bundle
    keeps what it reads out of the global heap (fixed-length JSON, the channel repeated in
    xafm_attrs_json), so the same damage there does not stop it. Every read runs in a
    forked child with a timeout, so that a hang fails the test instead of freezing it."""
    paths = []
    for k, (fmt, write, how) in enumerate(HANG_CASES):
        path = write(tmp_path / f"{k}-{fmt}-{how}{FORMATS[fmt][0]}")
        _damage(path, how)
        paths.append(str(path))
    own = _own_h5(tmp_path / "own.h5")
    expected = float(xafm.open(own).sum())
    _damage(own, "free-space-size-0")
    assert _in_child(_h5py_reads_channel, paths[0], timeout=1.0) is None, "h5py read the damaged heap: the premise no longer holds"
    results = _in_child(_open_each, [*paths, str(own)], timeout=60.0)
    assert results is not None, "a reader hung"
    assert [r[0] for r in results] == [*paths, str(own)]
    for path, kind, message, seconds in results[:-1]:
        assert kind == "CorruptFileError", (path, kind, message)
        assert path in message and re.search(r"did not finish in 0\.3 s: the global heap", message), message
        assert seconds < 10
    _, kind, got, _ = results[-1]
    assert kind == "read", got
    assert got[0] == pytest.approx(expected, rel=1e-6) and got[1] == ["height"]


def _refusal(path: str) -> list:
    try:
        xafm.open(path)
    except xafm.XafmError as exc:
        return [type(exc).__name__, str(exc)]
    return ["read", ""]


def test_an_external_link_to_a_fifo_is_refused_without_opening_it(tmp_path):
    """HDF5 would open the link's target, and opening a FIFO blocks until a writer comes:
    the link is refused from its own record, never followed (in a forked child, so that a
    regression fails instead of blocking the suite)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    path = _own_h5(tmp_path / "x.h5")
    _replace(path, "data", lambda g, leaf, shape, dtype: g.__setitem__(leaf, h5py.ExternalLink(str(fifo), "/x")))
    got = _in_child(_refusal, str(path), timeout=30.0)
    assert got is not None, "xafm.open blocked on the FIFO an external link names"
    assert got[0] == "UnsafeFileError" and str(fifo) in got[1], got
