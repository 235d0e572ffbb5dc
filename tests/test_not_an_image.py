"""What is not an image: a sound force curve, force map or spectrum is refused with
``NotAnImageError`` (not ``CorruptFileError``, which says the file is damaged), and every way
into xafm says so: ``xafm.open``, ``xafm.channels``, the xarray engine and ``xafm info``.

The files are ``tests/samples.NOT_IMAGES``: synthetic force curves, force maps and spectra
of every format that has them (Asylum ``.ibw``, Bruker Nanoscope, Nanosurf ``.nid`` and
``.nhf``, Park TIFF, NT-MDT ``.mdt``), written by ``xafm.testing``; each message reads
"<path>: this is a <kind> file (<what the reader found>); xafm reads images". Each
reader's own rule is tested in its own test module.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import xafm
from tests import samples
from tests.test_fuzz import check_mutated_copy
from xafm import cli, registry
from xafm.exceptions import CorruptFileError, FileError, NotAnImageError, XafmError, reading
from xafm.testing.ibw import write_force_curve, write_force_map

ENDING = "xafm reads images"
IDS = [n.id for n in samples.NOT_IMAGES]


@pytest.fixture(scope="module", params=samples.NOT_IMAGES, ids=IDS)
def not_image(request, tmp_path_factory):
    """(sample, path) for every not-an-image sample in tests/samples.py."""
    sample = request.param
    return sample, sample.make(tmp_path_factory.mktemp(sample.id.replace(".", "_")))


def _check(err, path, kind):
    assert type(err) is NotAnImageError, f"{type(err).__name__}: {err}"
    msg = str(err)
    assert msg.startswith(f"{path}: this is a {kind} file") and msg.endswith(ENDING), msg


def test_the_error_class():
    assert issubclass(NotAnImageError, XafmError) and issubclass(NotAnImageError, FileError)
    assert issubclass(NotAnImageError, OSError)  # `except OSError` keeps working, as for every FileError
    assert not issubclass(NotAnImageError, CorruptFileError) and not issubclass(CorruptFileError, NotAnImageError)
    assert xafm.NotAnImageError is NotAnImageError and "NotAnImageError" in xafm.__all__
    err = NotAnImageError("/data/f.ibw", "this is a force-curve file; xafm reads images")
    back = pickle.loads(pickle.dumps(err))  # dask.distributed ships errors between processes
    assert type(back) is NotAnImageError and str(back) == str(err) == "/data/f.ibw: this is a force-curve file; xafm reads images"


def test_the_one_place_that_labels_failures_keeps_it():
    with pytest.raises(NotAnImageError), reading("/data/f.ibw"):
        raise NotAnImageError("/data/f.ibw", "a spectrum")


def test_its_own_reader_refuses_it(not_image):
    """The format is found by name and content, so the verdict is the reader's, not 'unknown'."""
    sample, path = not_image
    assert registry.find(path).name == sample.format
    assert registry.identify(path).name == sample.format


def test_xafm_open(not_image):
    sample, path = not_image
    for kwargs in ({}, {"chunks": {}}):
        with pytest.raises(NotAnImageError) as err:
            xafm.open(path, **kwargs)
        _check(err.value, path, sample.kind)


def test_xafm_channels(not_image):
    sample, path = not_image
    with pytest.raises(NotAnImageError) as err:
        xafm.channels(path)
    _check(err.value, path, sample.kind)


def test_xarray_engine(not_image):
    sample, path = not_image
    with pytest.raises(NotAnImageError) as err:
        xr.open_dataset(path, engine="xafm")
    _check(err.value, path, sample.kind)
    # without engine=, xarray still picks xafm (its content check claims the file), so the
    # user gets xafm's verdict rather than "no engine"; except for HDF5 files, which xarray
    # offers its netcdf4 engine first (docs/formats.md, the contract), as without xafm
    if path.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n":
        assert xr.backends.plugins.guess_engine(path) == "netcdf4"
        return
    with pytest.raises(NotAnImageError):
        xr.open_dataset(path)


def test_cli_info(not_image, capsys):
    sample, path = not_image
    assert cli.main(["info", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"xafm: error: {_error(path)}\n"
    assert f"this is a {sample.kind} file" in captured.err and "Traceback" not in captured.err


def test_a_channel_of_a_force_curve_is_no_image_either(tmp_path):
    path, _ = write_force_curve(tmp_path / "c.ibw")
    with pytest.raises(NotAnImageError):
        xafm.open(path, channel="Defl")


def test_cli_info_as_a_program(tmp_path):
    """The installed command: a clear message on stderr, exit status 2, no traceback."""
    path, _ = write_force_map(tmp_path / "map.ibw")
    res = subprocess.run([sys.executable, "-m", "xafm.cli", "info", str(path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.startswith(f"xafm: error: {path}: this is a force-map file") and ENDING in res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""


def _error(path):
    try:
        xafm.open(path)
    except NotAnImageError as exc:
        return exc
    raise AssertionError("not refused")


def test_the_readers_that_wrap_os_errors_keep_it(tmp_path, monkeypatch):
    """FileErrors are OSErrors: readers that turn a library's OSError into a CorruptFileError
    must let xafm's own verdicts through with their type (h5 bundle, plain TIFF, TopoStats)."""
    from xafm.formats import h5bundle, tiff, topostats
    from xafm.testing import write_topostats
    from xafm.testing.tiff import write_plain_tiff

    def refuse(*args, **kwargs):
        raise NotAnImageError(args[0] if args and isinstance(args[0], str) else "x", "a spectrum; xafm reads images")

    stack = xafm.stack(np.zeros((2, 4, 4), np.float32), pixel_size_nm=1.0)
    h5 = stack.afm.to_h5(tmp_path / "s.h5")
    tif = write_plain_tiff(tmp_path / "s.tif", np.zeros((2, 4, 4), np.float32))
    ts = write_topostats(tmp_path / "s.topostats", np.zeros((4, 4), np.float32))
    for module, name, path in ((h5bundle, "H5DatasetArray", h5), (tiff, "_check_chain", tif), (topostats, "_plain", ts)):
        with monkeypatch.context() as m:
            m.setattr(module, name, refuse)
            with pytest.raises(NotAnImageError):
                xafm.open(path)


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_mutated_force_curves_give_only_xafm_errors(tmp_path_factory, data):
    """The fuzz test's terms on a force curve: any outcome is an xafm error naming the file
    (NotAnImageError among them), or an image if the mutation made one; no hang, no huge
    allocation."""
    seed = write_force_curve(tmp_path_factory.mktemp("fuzz-fc") / "curve.ibw", 300)[0]
    check_mutated_copy(seed, data)
