"""A file reads only itself: FIFOs, devices and sockets are refused, never waited on.

A FIFO named like any file xafm reads, ``/dev/zero`` and ``/dev/null`` reached through a
symlink, a device node made with ``mknod`` and a unix socket: every entry point
(``xafm.open``, ``xafm.channels``, the xarray engine and its ``guess_can_open``, the
command line) raises :class:`SpecialFileError` naming the path and what it is, and the
folder formats refuse a special file among their members (a FIFO as ``zarr.json``,
``.zattrs`` or a chunk of a store, as a frame of a frame folder, as a member or the
companion of a multi-file OME-TIFF set). Every test runs under an alarm, so a reader
that waits on a pipe fails instead of freezing the suite.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import socket
import stat
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xafm
from xafm import registry
from xafm.cli import main as cli_main
from xafm.core.contract import Probe
from xafm.core.paths import open_regular
from xafm.exceptions import SpecialFileError
from xafm.testing.ometiff_sets import write_ome_tiff_set
from xafm.xarray_plugin import XafmBackendEntrypoint

#: A refusal takes milliseconds; a reader waiting on a FIFO would wait for ever.
TIME_LIMIT_S = 5
#: What the error says each kind is.
SAYS = {"fifo": "FIFO", "dev-zero": "character device", "dev-null": "character device", "socket": "socket", "mknod": "character device"}


class Hang(Exception):
    pass


@pytest.fixture(autouse=True)
def time_limit():
    """Fail (not freeze) a test that blocks: an alarm in Python code, and a hard stop of
    the whole run with a traceback if C code ignores it."""

    def _alarm(signum, frame):
        raise Hang(f"blocked for more than {TIME_LIMIT_S} s")

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_LIMIT_S)
    faulthandler.dump_traceback_later(6 * TIME_LIMIT_S, exit=True)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        faulthandler.cancel_dump_traceback_later()


@contextlib.contextmanager
def special(kind: str, path: Path):
    """``path`` made a special file of ``kind`` (removed afterwards)."""
    sock = None
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "dev-null":
        path.symlink_to("/dev/null")
    elif kind == "mknod":
        try:
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero's numbers
        except (PermissionError, OSError) as exc:
            pytest.skip(f"cannot make a device node here ({exc}): needs root and a file system that allows devices")
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        here = os.getcwd()
        os.chdir(path.parent)  # a relative name: socket paths are limited to 108 bytes
        try:
            sock.bind(path.name)
        finally:
            os.chdir(here)
    try:
        yield path
    finally:
        if sock is not None:
            sock.close()


def _names() -> list[str]:
    """A file name for every suffix (and name pattern) xafm reads."""
    names = {f"x{s}" for f in registry.readable() for s in f.suffixes}
    names |= {"x.001", "x.spm"}  # Nanoscope's numbered files (a pattern, not a suffix)
    return sorted(names)


NAMES = _names()
KINDS = ["fifo", "dev-zero", "dev-null", "socket"]


def _refused(excinfo: pytest.ExceptionInfo, path: Path, kind: str) -> None:
    message = str(excinfo.value)
    assert os.fspath(path) in message, message
    assert SAYS[kind] in message, message


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", NAMES)
def test_open_refuses_a_special_file_of_every_suffix(tmp_path, name, kind):
    with special(kind, tmp_path / name) as path:
        with pytest.raises(SpecialFileError) as err:
            xafm.open(path)
        _refused(err, path, kind)


@pytest.mark.parametrize("kind", [*KINDS, "mknod"])
@pytest.mark.parametrize("name", ["x.h5", "x.npz", "x.asd", "x.ome.tif", "x.ome.zarr"])
def test_every_entry_point_refuses_it(tmp_path, name, kind, capsys):
    with special(kind, tmp_path / name) as path:
        for call in (
            lambda: xafm.open(path, chunks={}),
            lambda: xafm.channels(path),
            lambda: xr.open_dataset(path, engine="xafm"),
            lambda: registry.find(path),
        ):
            with pytest.raises(SpecialFileError) as err:
                call()
            _refused(err, path, kind)
        # the engine's guess neither blocks nor claims it; a content check reads nothing
        assert XafmBackendEntrypoint().guess_can_open(os.fspath(path)) is False
        assert registry.identify(path) is None
        assert Probe(path).head == b""
        for command in (["info", str(path)], ["convert", str(path), "--export", "npz", "--output-folder", str(tmp_path / "out")],
                        ["process", str(path), "--processing", "remove_plane", "--export", "npz", "--output-folder", str(tmp_path / "out")]):
            assert cli_main(command) == 2
            err_text = capsys.readouterr().err
            assert str(path) in err_text and SAYS[kind] in err_text, err_text
        assert not (tmp_path / "out").exists()


def test_open_regular_refuses_what_the_path_became(tmp_path):
    """The content check's open: a FIFO is refused without waiting for a writer."""
    with special("fifo", tmp_path / "p.npz") as path:
        with pytest.raises(SpecialFileError, match="FIFO"):
            open_regular(path)
    (tmp_path / "f.npz").write_bytes(b"PK\x03\x04")
    with open_regular(tmp_path / "f.npz") as fh:
        assert fh.read() == b"PK\x03\x04"
    with pytest.raises(SpecialFileError, match="folder"):
        open_regular(tmp_path)


# --------------------------------------------------------------------------------------
# inside folder formats
# --------------------------------------------------------------------------------------
def _stack(n=3):
    return xafm.stack(np.arange(n * 4 * 5, dtype=np.float32).reshape(n, 4, 5) + 1, pixel_size_nm=1.0, times=np.arange(n, dtype=float))


@pytest.mark.parametrize("version, member", [("0.5", "zarr.json"), ("0.4", ".zattrs"), ("0.4", ".zgroup"), ("0.5", "0/zarr.json")])
def test_a_fifo_as_zarr_metadata_is_refused(tmp_path, version, member):
    store = tmp_path / "s.ome.zarr"
    _stack().afm.to_ome_zarr(store, version=version)
    target = store / member
    target.unlink()
    with special("fifo", target):
        # listing channels reads only the group's attributes, not an array's
        calls = [lambda: xafm.open(store)] + ([lambda: xafm.channels(store)] if "/" not in member else [])
        for call in calls:
            with pytest.raises(SpecialFileError) as err:
                call()
            _refused(err, target, "fifo")


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_a_fifo_as_a_zarr_chunk_is_refused_when_read(tmp_path, version):
    store = tmp_path / "s.ome.zarr"
    _stack().afm.to_ome_zarr(store, version=version)
    chunks = [p for p in (store / "0").rglob("*") if p.is_file() and not p.name.startswith((".z", "zarr.json"))]
    assert len(chunks) == 1
    chunks[0].unlink()
    with special("fifo", chunks[0]):
        da = xafm.open(store, chunks={})  # lazy: nothing read yet
        with pytest.raises(SpecialFileError) as err:
            da.load()
        _refused(err, chunks[0], "fifo")


def test_a_fifo_among_the_frames_of_a_folder_is_refused(tmp_path, rng):
    from xafm.testing import write_nanoscope

    folder = tmp_path / "video"
    folder.mkdir()
    for name in ("a.001", "a.002"):
        write_nanoscope(folder / name, [{"name": "Height", "raw": rng.integers(-3000, 3000, size=(8, 6))}])
    assert xafm.open(folder).shape[0] == 2
    with special("fifo", folder / "a.003") as fifo:
        with pytest.raises(SpecialFileError) as err:
            xafm.open(folder)
        _refused(err, fifo, "fifo")


@pytest.mark.parametrize("which", ["member", "companion"])
def test_a_fifo_in_a_multi_file_ome_tiff_set_is_refused(tmp_path, which):
    arr = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 1, 1, 4, 5)
    got = write_ome_tiff_set(tmp_path, arr, companion=True)
    target = got["members"][1] if which == "member" else got["companion"]
    opened = got["companion"] if which == "member" else got["members"][0]
    target.unlink()
    with special("fifo", target):
        with pytest.raises(SpecialFileError) as err:
            xafm.open(opened).load()
        _refused(err, target, "fifo")
