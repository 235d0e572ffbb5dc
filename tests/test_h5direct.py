"""HDF5 lazy reads by byte range (``xafm.formats._h5direct``): after one read through h5py,
an array reads its dataset's bytes itself while the file keeps its identity.

What is checked: the values equal h5py's for every layout decoded (contiguous; chunked
unfiltered, with shuffle and deflate, with partial edge chunks and chunks never written),
for single frames and sub-boxes; the fast path is really taken (the kept layout); layouts
not decoded keep reading through h5py; a file replaced after the layout was kept is
refused by the read's own ``fstat`` (also with the shared identity check switched off);
a damaged chunk under an unchanged identity is a ``CorruptFileError``; a kept layout
survives pickling.
"""

from __future__ import annotations

import os
import pickle

import h5py
import numpy as np
import pytest

import xafm
from xafm.exceptions import CorruptFileError, FileChangedError
from xafm.formats._h5direct import Layout
from xafm.formats._hdf5 import H5DatasetArray
from xafm.testing.h5jpk import write_h5jpk
from xafm.testing.nhf import write_nhf
from xafm.testing.topostats import write_topostats

RNG = np.random.default_rng(16)
DATA = RNG.normal(size=(7, 11, 13)).astype(np.float32)

#: name -> h5py.create_dataset keyword arguments; every one decoded by byte range
DECODED = {
    "contiguous": {},
    "chunked": {"chunks": (2, 4, 13)},  # partial edge chunks along time and y
    "rows": {"chunks": (3, 11, 13)},  # whole rows per chunk (Nanosurf's layout)
    "gzip": {"chunks": (1, 11, 13), "compression": "gzip"},
    "gzip+shuffle": {"chunks": (2, 5, 6), "compression": "gzip", "shuffle": True},
    "shuffle": {"chunks": (4, 11, 7), "shuffle": True},
    "big-endian": {"dtype": ">f4"},
    "big-endian gzip+shuffle": {"dtype": ">f4", "chunks": (2, 4, 13), "compression": "gzip", "shuffle": True},
}
#: sub-boxes read after the first read (outer indexing keys)
KEYS = [(3, slice(None), slice(None)), (6, slice(None), slice(None)), (slice(1, 6), slice(2, 9), slice(4, 12)), (0, 10, slice(None))]


def _write(path, **kwargs):
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=DATA, **kwargs)
    return H5DatasetArray(path, "data", shape=DATA.shape, dtype=DATA.dtype)


@pytest.mark.parametrize("kind", sorted(DECODED))
def test_byte_range_reads_equal_h5py(tmp_path, kind):
    arr = _write(tmp_path / "x.h5", **DECODED[kind])
    assert arr.direct() is None  # nothing read yet: the first read goes through h5py
    np.testing.assert_array_equal(arr[(0, slice(None), slice(None))], DATA[0])
    assert isinstance(arr.direct(), Layout)
    for key in KEYS:
        got = arr[key]
        np.testing.assert_array_equal(got, DATA[key])
        got[...] = 0  # writable, like h5py's arrays
    np.testing.assert_array_equal(arr[(slice(None),) * 3], DATA)


def test_chunks_never_written_read_as_the_fill_value(tmp_path):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("data", shape=DATA.shape, dtype=DATA.dtype, chunks=(1, 11, 13), fillvalue=-5.0, compression="gzip")
        ds[0] = DATA[0]
        ds[4] = DATA[4]
    arr = H5DatasetArray(path, "data", shape=DATA.shape, dtype=DATA.dtype)
    want = np.full(DATA.shape, -5.0, np.float32)
    want[0], want[4] = DATA[0], DATA[4]
    arr[(0, slice(None), slice(None))]
    assert isinstance(arr.direct(), Layout)
    np.testing.assert_array_equal(arr[(slice(None),) * 3], want)
    np.testing.assert_array_equal(arr[(3, slice(None), slice(None))], want[3])


def test_layouts_not_decoded_read_through_h5py(tmp_path):
    arr = _write(tmp_path / "x.h5", chunks=(1, 11, 13), compression="lzf")
    for key in KEYS:
        np.testing.assert_array_equal(arr[key], DATA[key])
    assert arr.direct() is None and arr._layout is False


def test_strided_reads_still_select_in_hdf5(tmp_path):
    arr = _write(tmp_path / "x.h5")
    arr[(0, slice(None), slice(None))]
    np.testing.assert_array_equal(arr[(slice(0, 7, 3), slice(None), slice(None))], DATA[::3])


def test_a_file_replaced_after_the_layout_was_kept_is_refused(tmp_path, monkeypatch):
    """Another file at the path (its dataset stored elsewhere) is refused, not read at the
    old offsets: first by the shared identity check, and by the read's own ``fstat`` of the
    file it opened when that check is switched off."""
    import xafm.core.lazy

    path = tmp_path / "x.h5"
    arr = _write(path)
    arr[(0, slice(None), slice(None))]
    assert isinstance(arr.direct(), Layout)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("pad", data=np.zeros(1000))
        f.create_dataset("data", data=DATA + 1, chunks=(1, 11, 13), compression="gzip")
    os.replace(other, path)
    with pytest.raises(FileChangedError):
        arr[(1, slice(None), slice(None))]
    monkeypatch.setattr(xafm.core.lazy, "check_unchanged", lambda path, recorded: None)
    with pytest.raises(FileChangedError, match="changed since it was opened"):
        arr[(1, slice(None), slice(None))]


def test_a_damaged_chunk_under_an_unchanged_identity_is_corrupt(tmp_path):
    """A chunk's bytes overwritten in place with the size and time kept (what no identity
    check sees) give a ``CorruptFileError``, not garbage or a crash."""
    path = tmp_path / "x.h5"
    arr = _write(path, chunks=(1, 11, 13), compression="gzip")
    arr[(0, slice(None), slice(None))]
    layout = arr.direct()
    assert layout is not None and layout.chunks is not None
    offset, size, _ = layout.chunks[(2, 0, 0)]
    st = os.stat(path)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(CorruptFileError, match="inflate"):
        arr[(2, slice(None), slice(None))]
    np.testing.assert_array_equal(arr[(3, slice(None), slice(None))], DATA[3])


def test_a_kept_layout_survives_pickling(tmp_path):
    arr = _write(tmp_path / "x.h5", chunks=(2, 4, 13), compression="gzip", shuffle=True)
    arr[(0, slice(None), slice(None))]
    again = pickle.loads(pickle.dumps(arr))
    assert isinstance(again.direct(), Layout)
    np.testing.assert_array_equal(again[(5, slice(None), slice(None))], DATA[5])


def _h5jpk(path):
    raw = np.arange(3 * 4 * 5, dtype=np.int32).reshape(3, 4, 5) * 7 - 11
    return write_h5jpk(path, [{"name": "height", "retrace": False, "raw": raw}], start_ms=[0, 1000, 2000], end_ms=[900, 1900, 2900])


def _nhf(path):
    raw = np.arange(20, dtype=np.int32).reshape(4, 5) * 3 - 7
    return write_nhf(path, {"Forward": {"Topography": raw, "Error": raw}}, calibration={"Topography": (-1e-6, 1e-6, "m")})


def _topostats(path):
    return write_topostats(path, RNG.normal(size=(4, 5)), original=RNG.normal(size=(4, 5)))


@pytest.mark.parametrize("write", [_h5jpk, _nhf, _topostats], ids=["h5-jpk", "nhf", "topostats"])
def test_every_hdf5_format_reads_frames_by_byte_range_as_eagerly(tmp_path, write):
    """Each HDF5 format's lazy frames, after the first, come by byte range and equal an
    eager open (which reads through h5py)."""
    from xafm.formats._hdf5 import H5Direct

    path = write(tmp_path / {"_h5jpk": "x.h5-jpk", "_nhf": "x.nhf", "_topostats": "x.topostats"}[write.__name__])
    eager = xafm.open(path)
    lazy = xafm.open(path, lazy=True)
    n = lazy.sizes["time"]
    for i in [0, n - 1, 0]:
        np.testing.assert_array_equal(lazy.isel(time=i).values, eager.isel(time=i).values)
    np.testing.assert_array_equal(lazy.isel(y=slice(1, 3), x=slice(2, 4)).values, eager.isel(y=slice(1, 3), x=slice(2, 4)).values)
    arr = lazy.variable._data
    while not isinstance(arr, H5Direct):
        arr = arr.array if hasattr(arr, "array") else arr.base
    assert isinstance(arr.direct(), Layout)
