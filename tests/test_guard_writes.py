"""Writes never lose or mix data (issue 13), for every writer: concurrent writers of one new
destination, ``overwrite`` only onto the writer's own kind of output, folder replacement
(swap, and recovery of the two-rename fallback), stale temporary outputs of killed writes,
read-only and full disks, fsync, created parent folders and symlinks.

Concurrent and killed writers are forked child processes, stopped at the final step of
``atomic_output`` (``output._commit``) by a test hook.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import multiprocessing
import os
import re
import signal
import subprocess
import warnings
from pathlib import Path

import dask.array as dsa
import numpy as np
import pytest

import xafm
from xafm import registry
from xafm.core import blocks, leftovers, output, renames
from xafm.exceptions import OutputExistsError, WriteError, XafmWarning

pytestmark = pytest.mark.filterwarnings("ignore:a 100 nm scale bar")

#: One format per writer (the six video containers share one writer).
WRITERS = ["h5", "npz", "tif", "zarr", "gif", "mp4", "png"]
FOLDER_WRITERS = ["zarr", "png"]
FILE_WRITERS = [w for w in WRITERS if w not in FOLDER_WRITERS]


def dest_of(folder: Path, fmt: str, stem: str = "out") -> Path:
    return folder / f"{stem}{registry.get(fmt).suffixes[0]}"


def stack(value: int, n: int = 3, size: int = 8):
    """A small stack told apart by ``value``: its values and (rendered) its gradient."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    frame = (x if value % 2 else y) * value + value
    return xafm.stack(np.stack([frame + i for i in range(n)]), pixel_size_nm=1.0)


def big_stack():
    """Bigger than 1 MiB in every format (random values: nothing compresses them away)."""
    return xafm.stack(np.random.default_rng(0).normal(size=(32, 160, 160)).astype(np.float32), pixel_size_nm=1.0)


def write(fmt: str, da, path: Path, **kw) -> Path:
    return registry.write(fmt, da, path, **kw)


def fingerprint(path: Path) -> str:
    """A hash of a file's bytes, or of a folder's file names and bytes."""
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                h.update(p.relative_to(path).as_posix().encode() + b"\0" + p.read_bytes())
    else:
        h.update(path.read_bytes())
    return h.hexdigest()


def leftover_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".xafm-tmp", ".xafm-old")))


# --------------------------------------------------------------------------------------
# child processes: writers stopped at the final step
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """Forked children: they start at once with everything imported. Every writer runs
    once here first, so the children do not each pay its lazy imports."""
    warm = tmp_path_factory.mktemp("warm")
    for fmt in WRITERS:
        write(fmt, stack(1), dest_of(warm, fmt))
    return multiprocessing.get_context("fork")


def _child_write(fmt, path, value, at_final_step, report):
    """Write ``stack(value)``; at the final step run ``at_final_step(tmp)``; report the
    outcome (``("final", value, fingerprint)``, then ``("ok"|"exists"|"other", value, text)``)."""
    commit = output._commit

    def stopped(tmp, dest, **kw):
        report.put(("final", value, fingerprint(tmp), str(tmp)))
        at_final_step(tmp)
        return commit(tmp, dest, **kw)

    output._commit = stopped
    try:
        write(fmt, stack(value), Path(path))
        report.put(("ok", value, ""))
    except OutputExistsError as exc:
        report.put(("exists", value, str(exc)))
    except BaseException as exc:
        report.put(("other", value, repr(exc)))
    finally:
        os._exit(0)


def _racer(fmt, path, value, barrier, report):
    _child_write(fmt, path, value, lambda tmp: barrier.wait(30), report)


def _killed(fmt, path, value, report):
    _child_write(fmt, path, value, lambda tmp: os.kill(os.getpid(), signal.SIGKILL), report)


def _paused(fmt, path, value, go, report):
    _child_write(fmt, path, value, lambda tmp: go.wait(30), report)


class Reports:
    """What child processes report, through a pipe (a send is one synchronous write, so
    it arrives even when the child is killed or exits right after)."""

    def __init__(self, ctx):
        self.recv, self.send = ctx.Pipe(duplex=False)

    def put(self, item):
        self.send.send(item)

    def get(self, timeout=60):
        assert self.recv.poll(timeout), "a child process reported nothing"
        return self.recv.recv()


def _take(report, kind, timeout=60):
    item = report.get(timeout)
    assert item[0] == kind, item
    return item


@pytest.mark.parametrize("fmt", WRITERS)
def test_two_processes_writing_one_new_destination(fmt, tmp_path, ctx):
    """Both reach the final step together: exactly one wins, the other is refused, and
    the output is wholly the winner's."""
    path = dest_of(tmp_path, fmt)
    barrier, report = ctx.Barrier(2), Reports(ctx)
    procs = [ctx.Process(target=_racer, args=(fmt, str(path), v, barrier, report)) for v in (1, 2)]
    for p in procs:
        p.start()
    items = [report.get() for _ in range(4)]
    for p in procs:
        p.join(30)
    finals = {v: fp for kind, v, fp, *_ in items if kind == "final"}
    outcomes = sorted((kind, v) for kind, v, *_ in items if kind != "final")
    assert len(finals) == 2 and finals[1] != finals[2]
    assert [k for k, _ in outcomes] == ["exists", "ok"], items
    winner = next(v for k, v in outcomes if k == "ok")
    assert fingerprint(path) == finals[winner]
    assert leftover_names(tmp_path) == []


def _einval(*_args):
    """``renameat2`` as a file system without its flags answers."""
    ctypes.set_errno(errno.EINVAL)
    return -1


@pytest.mark.parametrize("flags", ["renameat2", "EINVAL"])
@pytest.mark.parametrize("fmt", WRITERS)
def test_a_destination_that_appears_during_the_write_is_never_replaced(fmt, flags, tmp_path, monkeypatch):
    """Also where ``renameat2`` lacks its flags: files fall back to a hard link, folders
    to a check then a rename."""
    if flags == "EINVAL":
        monkeypatch.setattr(renames, "_RENAMEAT2", _einval)
    path = dest_of(tmp_path, fmt)
    commit = output._commit

    def other_writer_first(tmp, dest, **kw):
        if fmt in FOLDER_WRITERS:
            dest.mkdir()
            (dest / "theirs.txt").write_text("theirs")
        else:
            dest.write_bytes(b"theirs")
        return commit(tmp, dest, **kw)

    monkeypatch.setattr(output, "_commit", other_writer_first)
    with pytest.raises(OutputExistsError, match="appeared") as err:
        write(fmt, stack(1), path)
    assert str(path) in str(err.value)
    assert (path / "theirs.txt").read_text() == "theirs" if fmt in FOLDER_WRITERS else path.read_bytes() == b"theirs"
    assert leftover_names(tmp_path) == []
    monkeypatch.setattr(output, "_commit", commit)
    other = dest_of(tmp_path, fmt, "other")
    write(fmt, stack(1), other)  # and without a rival: written, then replaced
    write(fmt, stack(2), other, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, other.name])


@pytest.mark.parametrize("fmt", WRITERS)
def test_stale_temporary_outputs_go_and_a_live_writers_stay(fmt, tmp_path, ctx):
    path = dest_of(tmp_path, fmt)
    report = Reports(ctx)
    killed = ctx.Process(target=_killed, args=(fmt, str(path), 1, report))
    killed.start()
    stale = Path(_take(report, "final")[3])
    killed.join(30)
    assert killed.exitcode == -signal.SIGKILL and stale.exists() and not path.exists()
    go = ctx.Event()
    live = ctx.Process(target=_paused, args=(fmt, str(path), 2, go, report))
    live.start()
    running = Path(_take(report, "final")[3])
    try:
        write(fmt, stack(3), path)  # sweeps what it can prove dead
        assert not stale.exists()
        assert running.exists(), "the temporary output of a running writer was removed"
    finally:
        go.set()
    _take(report, "exists")  # the running writer then finds the destination taken
    live.join(30)
    assert leftover_names(tmp_path) == []


def test_the_sweep_leaves_what_is_not_a_stale_temporary_output(tmp_path):
    path = tmp_path / "out.h5"
    other = tmp_path / ".other.h5.0123456789.xafm-tmp"  # another destination's
    other.write_bytes(b"x")
    fifo = tmp_path / ".out.h5.abcdefabcd.xafm-tmp"  # a FIFO named like one: never opened blocking
    os.mkfifo(fifo)
    foreign = tmp_path / ".out.h5.0123456789.xafm-tmp"  # another user's (when we may chown)
    foreign.write_bytes(b"x")
    kept = [other, fifo, path, foreign]
    try:
        os.chown(foreign, os.getuid() + 1, -1)
    except (PermissionError, AttributeError):
        foreign.unlink()
        kept.remove(foreign)
    write("h5", stack(1), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)


# --------------------------------------------------------------------------------------
# overwrite replaces only the writer's own kind of output
# --------------------------------------------------------------------------------------
def _unrelated_folder(p: Path) -> None:
    p.mkdir()
    (p / "notes.txt").write_text("keep")


def _other_folder_output(fmt: str, p: Path) -> None:
    """The other folder writer's output at ``p``."""
    other = "png" if fmt == "zarr" else "zarr"
    write(other, stack(1), dest_of(p.parent, other, "other")).rename(p)


def _plain_zarr(p: Path) -> None:
    import zarr

    zarr.open_group(str(p), mode="w").create_array("a", shape=(2,), dtype="f4")


def _frames_and_a_stranger(p: Path) -> None:
    write("png", stack(1), p.parent / "x_frames").rename(p)
    (p / "notes.txt").write_text("keep")


def _a_file(p: Path) -> None:
    p.write_bytes(b"keep")


FOREIGN = {
    "a non-empty folder": _unrelated_folder,
    "a file": _a_file,
    "the other folder writer's output": None,
    "a plain Zarr store": _plain_zarr,
    "frames with another file": _frames_and_a_stranger,
}
#: What each writer must refuse to replace: a file writer, a folder; a folder writer, all of them.
REFUSED = [(fmt, what) for fmt in WRITERS for what in FOREIGN if fmt in FOLDER_WRITERS or what == "a non-empty folder"]


@pytest.mark.parametrize(("fmt", "what"), REFUSED)
def test_overwrite_refuses_what_this_writer_does_not_write(fmt, what, tmp_path):
    path = dest_of(tmp_path, fmt)
    make = FOREIGN[what] or (lambda p: _other_folder_output(fmt, p))
    make(path)
    before = fingerprint(path)
    with pytest.raises((OutputExistsError, WriteError)) as err:
        write(fmt, stack(2), path, overwrite=True)
    message = str(err.value)
    assert str(path) in message and "overwrite=True replaces only" in message and "left as it was" in message
    assert ("is a folder" if path.is_dir() else "is a file") in message
    assert fingerprint(path) == before
    assert leftover_names(tmp_path) == []


@pytest.mark.parametrize("fmt", FILE_WRITERS)
def test_a_file_writer_never_replaces_a_folder_even_an_empty_one(fmt, tmp_path):
    path = dest_of(tmp_path, fmt)
    path.mkdir()
    with pytest.raises(OutputExistsError, match="is an empty folder, not a file"):
        write(fmt, stack(1), path, overwrite=True)
    assert path.is_dir()


@pytest.mark.parametrize("fmt", FOLDER_WRITERS)
def test_a_folder_writer_replaces_an_empty_folder(fmt, tmp_path):
    path = dest_of(tmp_path, fmt)
    path.mkdir()
    write(fmt, stack(1), path, overwrite=True)
    assert any(path.iterdir())


def test_ome_zarr_append_still_works_in_place(tmp_path):
    path = tmp_path / "a.ome.zarr"
    write("zarr", stack(1, n=2), path)
    write("zarr", stack(1, n=2).assign_coords(time=[5.0, 6.0]), path, mode="a", append_dim="time")
    assert xafm.open(path).sizes["time"] == 4


# --------------------------------------------------------------------------------------
# replacing a folder: one swap, or two renames that the next open or write completes
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FOLDER_WRITERS)
def test_a_folder_is_replaced_by_one_swap(fmt, tmp_path, monkeypatch):
    path = write(fmt, stack(1), dest_of(tmp_path, fmt))
    old = fingerprint(path)
    swaps = []
    exchange = renames.exchange
    monkeypatch.setattr(renames, "exchange", lambda a, b: (swaps.append((Path(a), Path(b))), exchange(a, b))[1])
    write(fmt, stack(2), path, overwrite=True)
    assert len(swaps) == 1 and swaps[0][1] == path
    assert fingerprint(path) != old and leftover_names(tmp_path) == []


def _unsupported(*_args):
    raise renames.Unsupported("forced by the test")


@pytest.mark.parametrize("fmt", FOLDER_WRITERS)
def test_the_two_rename_fallback_replaces_a_folder(fmt, tmp_path, monkeypatch):
    path = write(fmt, stack(1), dest_of(tmp_path, fmt))
    monkeypatch.setattr(renames, "exchange", _unsupported)
    write(fmt, stack(2), path, overwrite=True)
    reference = write(fmt, stack(2), dest_of(tmp_path / "ref", fmt, "out"))
    assert sorted(p.name for p in path.rglob("*")) == sorted(p.name for p in reference.rglob("*"))
    assert leftover_names(tmp_path) == []


def _killed_between_renames(fmt, path, report):
    """Replace ``path`` with the fallback and die between its two renames."""
    renames.exchange = _unsupported
    noreplace = renames.rename_noreplace

    def second_rename(src, dst):
        if str(src).endswith(".xafm-tmp") and str(dst) == path:
            report.put(("dying", sorted(os.listdir(os.path.dirname(path)))))
            os._exit(9)
        return noreplace(src, dst)

    renames.rename_noreplace = second_rename
    try:
        write(fmt, stack(2), Path(path), overwrite=True)
    finally:
        os._exit(0)


@pytest.mark.parametrize("fmt", FOLDER_WRITERS)
def test_a_kill_between_the_two_renames_is_recovered(fmt, tmp_path, ctx):
    path = write(fmt, stack(1), dest_of(tmp_path, fmt))
    old = fingerprint(path)
    report = Reports(ctx)
    p = ctx.Process(target=_killed_between_renames, args=(fmt, str(path), report))
    p.start()
    _, names = report.get()
    p.join(30)
    assert path.name not in names and any(n.endswith(".xafm-old") for n in names)  # the state the kill leaves
    assert p.exitcode == 9 and not path.exists()
    assert sorted(n.rsplit(".", 1)[1] for n in leftover_names(tmp_path)) == ["xafm-old", "xafm-tmp"]
    with pytest.warns(XafmWarning, match=re.escape(f"restored {path}")):
        if fmt == "zarr":  # the next open
            np.testing.assert_array_equal(xafm.open(path).values, stack(1).values)
        else:  # the next write (refused: the restored folder exists)
            with pytest.raises(OutputExistsError):
                write(fmt, stack(3), path)
    assert fingerprint(path) == old
    write(fmt, stack(3), path, overwrite=True)  # the dead writer's temporary output goes too
    assert leftover_names(tmp_path) == []


@pytest.mark.parametrize("fmt", FOLDER_WRITERS)
def test_an_old_output_beside_a_complete_one_is_removed(fmt, tmp_path):
    path = write(fmt, stack(2), dest_of(tmp_path, fmt))
    old = write(fmt, stack(1), tmp_path / f".{path.name}.0123456789.xafm-old")
    new = fingerprint(path)
    with pytest.warns(XafmWarning, match=re.escape(f"removed {old.name}")):
        output.recover(path)
    assert not old.exists() and fingerprint(path) == new


def test_an_old_output_a_writer_holds_is_left_alone(tmp_path):
    path = tmp_path / "s.ome.zarr"
    old = write("zarr", stack(1), tmp_path / f".{path.name}.0123456789.xafm-old")
    held = leftovers.lock_existing(old)  # as the replacing writer holds it
    assert held is not None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert output.recover(path) == []
        assert old.exists() and not path.exists()
    finally:
        held.close()


# --------------------------------------------------------------------------------------
# parent folders and symlinks
# --------------------------------------------------------------------------------------
def _failing_stack():
    def block(block_id=None):
        if block_id[0] >= 2:
            raise ZeroDivisionError("chunk exploded")
        return np.ones((1, 8, 8), np.float32)

    return xafm.stack(dsa.map_blocks(block, chunks=((1,) * 4, (8,), (8,)), dtype=np.float32), pixel_size_nm=1.0)


@pytest.mark.parametrize("fmt", WRITERS)
def test_a_failed_write_removes_the_folders_it_created(fmt, tmp_path, monkeypatch):
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 1)
    (tmp_path / "had").mkdir()
    with pytest.raises(WriteError, match="chunk exploded"):
        write(fmt, _failing_stack(), dest_of(tmp_path / "had" / "new" / "deeper", fmt))
    assert [p.name for p in tmp_path.rglob("*")] == ["had"]


@pytest.mark.parametrize("fmt", WRITERS)
def test_a_dangling_symlink_counts_as_existing(fmt, tmp_path):
    path, target = dest_of(tmp_path, fmt), tmp_path / "nowhere"
    path.symlink_to(target)
    with pytest.raises(OutputExistsError):
        write(fmt, stack(1), path)
    assert path.is_symlink() and not target.exists()
    write(fmt, stack(1), path, overwrite=True)
    assert not path.is_symlink() and path.exists() and not target.exists()


@pytest.mark.parametrize("fmt", WRITERS)
def test_overwrite_replaces_a_symlink_never_its_target(fmt, tmp_path):
    path = dest_of(tmp_path, fmt)
    target = write(fmt, stack(1), dest_of(tmp_path / "elsewhere", fmt))
    before = fingerprint(target)
    path.symlink_to(target)
    with pytest.raises(OutputExistsError):
        write(fmt, stack(2), path)
    write(fmt, stack(2), path, overwrite=True)
    assert not path.is_symlink() and fingerprint(path) != before
    assert fingerprint(target) == before


# --------------------------------------------------------------------------------------
# fsync
# --------------------------------------------------------------------------------------
@pytest.fixture
def fsyncs(monkeypatch):
    """The paths ``os.fsync`` was called on, in order."""
    calls: list[str] = []
    real = os.fsync

    def counted(fd):
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", counted)
    return calls


@pytest.mark.parametrize("fmt", WRITERS)
def test_a_write_is_synced_before_and_after_its_rename(fmt, tmp_path, fsyncs):
    path = write(fmt, stack(1), dest_of(tmp_path, fmt))
    parent = str(tmp_path)
    assert fsyncs[-1] == parent, "the folder is synced after the rename"
    before = fsyncs[: fsyncs.index(parent)]
    assert before and all(".xafm-tmp" in p for p in before), "the data are synced before the rename"
    if path.is_dir():
        files = {p.relative_to(path).as_posix() for p in path.rglob("*")} | {""}
        synced = {p.split(".xafm-tmp", 1)[1].lstrip("/") for p in before}
        assert synced == files, "every file and folder is synced"


@pytest.mark.parametrize("fmt", WRITERS)
def test_fsync_false_syncs_nothing(fmt, tmp_path, fsyncs):
    write(fmt, stack(1), dest_of(tmp_path, fmt), fsync=False)
    assert fsyncs == []


def test_cli_no_fsync(tmp_path, fsyncs):
    from xafm.cli import main

    src = write("h5", stack(1), tmp_path / "in.h5")
    fsyncs.clear()
    assert main(["convert", str(src), "--export", "npz", "--output-folder", str(tmp_path / "a"), "--no-fsync"]) == 0
    assert fsyncs == [] and (tmp_path / "a" / "in.npz").exists()
    assert main(["convert", str(src), "--export", "npz", "--output-folder", str(tmp_path / "b")]) == 0
    assert any(p.endswith(".xafm-tmp") for p in fsyncs)


# --------------------------------------------------------------------------------------
# read-only and full disks
# --------------------------------------------------------------------------------------
@contextlib.contextmanager
def tmpfs(where: Path, size: str = "1m"):
    where.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True)
    except OSError as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.parametrize("fmt", WRITERS)
def test_a_read_only_disk_is_a_write_error_naming_the_destination(fmt, tmp_path):
    with tmpfs(tmp_path / "ro") as disk:
        existing = write(fmt, stack(1), dest_of(disk, fmt, "existing"))
        before = fingerprint(existing)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        for path, overwrite in ((dest_of(disk, fmt, "new"), False), (existing, True)):
            with pytest.raises(WriteError) as err:
                write(fmt, stack(2), path, overwrite=overwrite)
            assert str(path) in str(err.value) and "Read-only file system" in str(err.value)
        assert fingerprint(existing) == before and sorted(p.name for p in disk.iterdir()) == [existing.name]


@pytest.mark.parametrize("fmt", WRITERS)
def test_a_full_disk_is_a_write_error_and_leaves_things_as_they_were(fmt, tmp_path):
    with tmpfs(tmp_path / "small", "1m") as disk:
        existing = write(fmt, stack(1), dest_of(disk, fmt, "existing"))
        before = fingerprint(existing)
        for path, overwrite in ((dest_of(disk, fmt, "new"), False), (existing, True)):
            with pytest.raises(WriteError) as err:
                write(fmt, big_stack(), path, overwrite=overwrite)
            assert str(path) in str(err.value)
        assert fingerprint(existing) == before
        assert sorted(p.name for p in disk.iterdir()) == [existing.name]
