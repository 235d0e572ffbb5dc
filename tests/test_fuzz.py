"""Fuzz every reader with mutated copies of real files and of xafm's own bundles.

The only exceptions allowed out of ``xafm.open`` are xafm's own; nothing may hang, and a
lying header must not make a reader allocate absurd memory.
"""

from __future__ import annotations

import faulthandler
import signal
import struct
import tempfile
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xafm
import xafm.formats._hdf5
from tests.helpers import shared_file

REAL_FILES = [
    ("afm", "asd_sample_0.asd"),
    ("afm", "sample_0.h5-jpk"),
    ("afm", "sample_0.jpk"),
    ("afm", "sample_0.jpk-qi-image"),
    ("afm", "old_bruker.002"),
    ("afm", "IgorIBWReader_P0089OP0027.ibw"),
    ("afm", "PTO_110_Virgin0001.gwy"),
    ("afm", "gwyfile_test.gwy"),
    ("afm", "pyspm_test.sxm"),
    ("afm", "sample_0.stp"),
    ("afm", "sample_0_1.topostats"),
    ("other", "cluster.nd2"),
    ("other", "multi-channel.ome.tif"),
    ("afm", "park_example.tiff"),
    ("afm", "park_forcecurve.tiff"),
    ("afm", "nanosurf_driveafm.nid"),
    ("afm", "nanosurf_flexafm_nonsquare.nid"),
    ("afm", "nanosurf_stm.nid"),
    ("afm", "nanosurf_wavemode.nhf"),
    ("afm", "ntmdt_current_map.mdt"),
    ("afm", "bruker_v10_peakforce.di"),
    ("afm", "bruker_v94_fastscan.spm"),
    ("afm", "bruker_v91_fastscan_nonsquare.001"),
    ("afm", "bruker_v72_dimension.di"),
    ("afm", "asd_v0_sample.asd"),
]
OWN_FORMATS = ["h5", "npz", "tif"]
#: A reader may use this much memory (tracemalloc peak) on any mutated file.
MEMORY_LIMIT = 512 * 2**20
TIME_LIMIT_S = 30


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"reader took more than {TIME_LIMIT_S} s")


@st.composite
def mutations(draw, size: int):
    kind = draw(st.sampled_from(["flip", "truncate", "inflate", "flip", "inflate"]))
    if kind == "truncate":
        return ("truncate", draw(st.integers(0, max(0, size - 1))))
    if kind == "flip":
        n = draw(st.integers(1, 16))
        head = min(size, 8192)
        pos = draw(st.lists(st.integers(0, max(0, size - 1)) | st.integers(0, max(0, head - 1)), min_size=n, max_size=n))
        vals = draw(st.lists(st.integers(0, 255), min_size=n, max_size=n))
        return ("flip", list(zip(pos, vals)))
    pos = draw(st.integers(0, max(0, min(size, 4096) - 4)))
    value = draw(st.sampled_from([2**31 - 1, 2**30, 2**24, 65535, -1, -(2**31), 10**9]))
    endian = draw(st.sampled_from("<>"))
    return ("inflate", (pos, value, endian))


def _mutate(data: bytes, mutation) -> bytes:
    kind, arg = mutation
    if kind == "truncate":
        return data[:arg]
    buf = bytearray(data)
    if kind == "flip":
        for pos, val in arg:
            if pos < len(buf):
                buf[pos] = val
    else:
        pos, value, endian = arg
        buf[pos : pos + 4] = struct.pack(endian + "i", value)
    return bytes(buf)


def check_reader(path: Path) -> None:
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_LIMIT_S)
    # a hang inside a C library never returns to Python, where the alarm would be seen:
    # the watchdog then ends the run with every thread's traceback instead of freezing it
    faulthandler.dump_traceback_later(2 * TIME_LIMIT_S, exit=True)
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                da = xafm.open(path)
                assert da.ndim >= 3 and da.dims[-2:] == ("y", "x")
            except xafm.XafmError as exc:  # any other exception fails the test
                assert str(path) in str(exc), "errors name the file"
        _, peak = tracemalloc.get_traced_memory()
        assert peak < MEMORY_LIMIT, f"reader allocated {peak / 2**20:.0f} MiB on a mutated file"
    finally:
        tracemalloc.stop()
        faulthandler.cancel_dump_traceback_later()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def check_mutated_copy(seed: Path, data: st.DataObject) -> None:
    """Open a mutated copy of ``seed``: only xafm errors, no hang, no absurd memory."""
    raw = seed.read_bytes()
    mutation = data.draw(mutations(len(raw)))
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / seed.name
        target.write_bytes(_mutate(raw, mutation))
        check_reader(target)


@pytest.mark.parametrize("group,name", REAL_FILES, ids=[n for _, n in REAL_FILES])
@settings(max_examples=10)
@given(data=st.data())
def test_fuzz_real_files(group, name, data):
    check_mutated_copy(shared_file(group, name), data)


@pytest.fixture(scope="module")
def own_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-own")
    rng = np.random.default_rng(1)
    da = xafm.stack(rng.normal(size=(4, 9, 7)).astype(np.float32), pixel_size_nm=1.5)
    da = da.afm.remove_plane(keep_layer=True).afm.mask_threshold(0.0)
    return da.afm.export(folder, "seed", OWN_FORMATS)


@pytest.mark.parametrize("fmt", OWN_FORMATS)
@settings(max_examples=15)
@given(data=st.data())
def test_fuzz_own_bundles(fmt, own_files, data):
    check_mutated_copy(own_files[fmt], data)


def _raising_in(module: str, code: str):
    """A function whose frame belongs to ``module`` (as if xafm's own code raised)."""
    namespace = {"__name__": module}
    exec(f"def broken(*args, **kwargs):\n    {code}\n", namespace)
    return namespace["broken"]


@pytest.mark.parametrize(
    "module, code, expected",
    [
        ("xafm.formats.h5bundle", "raise KeyError('leaked')", xafm.CorruptFileError),  # a lookup the file failed
        ("h5py._hl.files", "raise TypeError('odd dtype')", xafm.CorruptFileError),  # a library choking on the file
        # the data model refusing the stack a reader built from the file's sizes (it named no file)
        ("xafm.core.model", "raise __import__('xafm').StackError('data must have at least one frame')", xafm.CorruptFileError),
        ("xafm.formats.h5bundle", "return None.missing", AttributeError),  # xafm's own bug stays a bug
        ("xafm.formats.h5bundle", "raise TypeError('bad call')", TypeError),
    ],
)
def test_one_place_tells_damaged_files_from_bugs(tmp_path, monkeypatch, module, code, expected):
    """Damage becomes a CorruptFileError naming the file; xafm's programming errors stay
    what they are (the same, whether they happen on open or on a lazy read)."""
    from xafm.formats import _bundle

    path = xafm.stack(np.zeros((2, 3, 3)), pixel_size_nm=1.0).afm.to_h5(tmp_path / "x.h5")
    monkeypatch.setattr(_bundle, "assemble_bundle", _raising_in(module, code))
    with pytest.raises(expected) as err:
        xafm.open(path)
    assert type(err.value) is expected or issubclass(type(err.value), expected)
    if expected is xafm.CorruptFileError:
        assert str(path) in str(err.value) and "failed" in str(err.value)
    monkeypatch.undo()
    lazy = xafm.open(path, chunks={})
    from xafm.core import lazy as core_lazy

    monkeypatch.setattr(core_lazy.RawFramesArray, "_read", _raising_in(module, code))
    monkeypatch.setattr(xafm.formats._hdf5.H5DatasetArray, "_read", _raising_in(module, code))
    with pytest.raises(expected):
        _ = lazy.values
