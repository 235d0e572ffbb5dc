"""Interrupts and crashes during a write (issue 13).

- A Ctrl-C during an OME-Zarr write leaves nothing behind: the chunk writes in flight
  (on dask's threads, or on zarr's own IO thread for an in-memory stack) finish before
  the temporary store is removed, so none recreates it afterwards. A child process
  writes to a slow disk (zarr's ``LocalStore.set`` delayed, as a network disk would
  be) and gets SIGINT while a chunk is on its way, several times over.
- A failing dask task (one block raises) stops every writer fed by dask only once the
  other tasks of its compute have stopped: none runs when the ``WriteError`` reaches the
  caller, no temporary is left and an existing output stays as it was.
- ffmpeg dies with its parent: a SIGKILL of a process exporting a video takes the
  encoder with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dask
import dask.array as dsa
import numpy as np
import pytest

import xafm
from xafm import animation, registry

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:a 100 nm scale bar")


def child_env() -> dict[str, str]:
    """The environment of a child process that imports this worktree's xafm."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


# --------------------------------------------------------------------------------------
# Ctrl-C during an OME-Zarr write
# --------------------------------------------------------------------------------------
#: The child: writes one store per entry of its list of backings (dask or numpy), each
#: interrupted (SIGINT to itself, which Linux delivers to the main thread, as a
#: terminal's Ctrl-C) when its first chunk write starts; a chunk lands ``SLOW_S`` after
#: it was asked for. Prints one JSON line per run. (One child for all runs: importing
#: xafm, dask and zarr is most of the cost.)
INTERRUPTED_WRITER = textwrap.dedent(
    """
    import asyncio, json, os, signal, sys, threading, time
    from pathlib import Path
    import dask.array as dsa, numpy as np, zarr.storage
    import xafm
    from xafm.formats import omezarr

    SLOW_S = 0.1
    root, backings = Path(sys.argv[1]), sys.argv[2].split(",")
    original = zarr.storage.LocalStore.set
    asked = threading.Event()

    async def slow_set(self, key, value):
        if not key.endswith(("zarr.json", ".zarray", ".zattrs", ".zgroup")):  # a chunk
            if not asked.is_set():
                asked.set()
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while this chunk is on its way
            await asyncio.sleep(SLOW_S)
        return await original(self, key, value)

    zarr.storage.LocalStore.set = slow_set
    values = np.random.default_rng(0).normal(size=(8, 32, 32)).astype(np.float32)
    for run, backing in enumerate(backings):
        asked.clear()
        data = dsa.from_array(values, chunks=(1, 32, 32)) if backing == "dask" else values
        folder = root / f"{backing}-{run}"
        folder.mkdir()
        interrupted = False
        try:
            omezarr.write(xafm.stack(data, pixel_size_nm=1.0), folder / "s.ome.zarr", chunks=(1, 32, 32))
        except KeyboardInterrupt:
            interrupted = True
        time.sleep(SLOW_S + 0.1)  # a write still in flight would land meanwhile
        print(json.dumps({"run": folder.name, "interrupted": interrupted, "left": sorted(os.listdir(folder))}), flush=True)
    """
)


#: Five interrupted writes of a dask stack, two of an in-memory one (written by zarr's IO thread).
BACKINGS = ["dask"] * 5 + ["numpy"] * 2


def test_ctrl_c_during_an_ome_zarr_write_leaves_nothing(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(INTERRUPTED_WRITER)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(
        [sys.executable, str(script), str(out), ",".join(BACKINGS)],
        capture_output=True, text=True, timeout=300, env=child_env(), cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    names = [f"{b}-{i}" for i, b in enumerate(BACKINGS)]
    assert [r["run"] for r in results] == names
    assert all(r["interrupted"] for r in results), f"a write finished before its Ctrl-C: {results}"
    assert [r["left"] for r in results] == [[]] * len(names), f"left behind after the Ctrl-C: {results}"
    after_exit = {f.name: sorted(os.listdir(f)) for f in out.iterdir()}
    assert after_exit == {name: [] for name in names}


# --------------------------------------------------------------------------------------
# a failing dask task
# --------------------------------------------------------------------------------------
SLOW_BLOCK_S = 0.15
DASK_FED = ["h5", "npz", "tif", "zarr", "gif", "mp4", "png"]


class Marks:
    """Which blocks of a stack started and which finished (files, so that worker
    processes can leave them too)."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir()

    def running(self) -> list[str]:
        names = {p.name for p in self.folder.iterdir()}
        return sorted(n.split("-", 1)[1] for n in names if n.startswith("started-") and f"done-{n.split('-', 1)[1]}" not in names)


def failing_stack(marks: Marks, n: int = 6):
    """A dask stack whose block 0 raises once another block is running (slowly)."""
    folder = marks.folder

    def block(block_id=None):
        i = block_id[0]
        if i == 0:
            deadline = time.monotonic() + 5
            while not any(p.name.startswith("started-") for p in folder.iterdir()) and time.monotonic() < deadline:
                time.sleep(0.005)
            raise RuntimeError("block 0 exploded")
        (folder / f"started-{i}").touch()
        time.sleep(SLOW_BLOCK_S)
        (folder / f"done-{i}").touch()
        return np.full((1, 8, 8), i, np.float32)

    arr = dsa.map_blocks(block, chunks=((1,) * n, (8,), (8,)), dtype=np.float32)
    return xafm.stack(arr, pixel_size_nm=1.0)


def snapshot(path: Path):
    if path.is_dir():
        return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    return path.read_bytes()


@pytest.mark.parametrize("fmt", DASK_FED)
def test_a_failing_task_stops_the_others_before_the_clean_up(fmt, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    path = out / f"s{registry.get(fmt).suffixes[0]}"
    registry.write(fmt, xafm.stack(np.ones((2, 8, 8), np.float32), pixel_size_nm=1.0), path)
    before = snapshot(path)
    marks = Marks(tmp_path / "marks")
    with dask.config.set(num_workers=2, scheduler="threads"), pytest.raises(xafm.WriteError, match="block 0 exploded") as err:
        registry.write(fmt, failing_stack(marks), path, overwrite=True)
    assert marks.running() == [], "tasks still ran when the writer's error reached the caller"
    assert str(path) in str(err.value)
    assert sorted(p.name for p in out.iterdir()) == [path.name], "a temporary was left"
    assert snapshot(path) == before


def test_a_failing_task_on_a_cluster_stops_the_others_before_the_clean_up(tmp_path):
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "out"
    out.mkdir()
    path = out / "s.ome.zarr"
    marks = Marks(tmp_path / "marks")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, distributed.Client(cluster):
        with pytest.raises(xafm.WriteError, match="block 0 exploded"):
            registry.write("zarr", failing_stack(marks), path)
        assert marks.running() == [], "tasks still ran on the workers when the error reached the caller"
    assert list(out.iterdir()) == []


def test_a_pool_of_the_users_own_is_waited_for_and_kept(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    marks = Marks(tmp_path / "marks")
    with ThreadPoolExecutor(2) as pool, dask.config.set(pool=pool, scheduler="threads"):
        with pytest.raises(xafm.WriteError):
            registry.write("h5", failing_stack(marks), tmp_path / "s.h5")
        assert marks.running() == []
        assert pool.submit(lambda: 42).result() == 42  # still the user's, still open
    assert [p.name for p in tmp_path.iterdir()] == ["marks"]


# --------------------------------------------------------------------------------------
# ffmpeg dies with its parent
# --------------------------------------------------------------------------------------
#: The child: a long MP4 export of an in-memory stack (the encoder is looked for while it runs).
VIDEO_EXPORT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import xafm
    from xafm import animation

    frames = np.random.default_rng(1).normal(size=(4000, 32, 32)).astype("f4")
    animation.to_video(xafm.stack(frames, pixel_size_nm=1.0), sys.argv[1], fps=10, zmin=-3.0, zmax=3.0)
    """
)


def _children(pid: int) -> list[int]:
    try:
        import psutil
    except ImportError:  # pragma: no cover
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry))
        return out
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has died


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's (prctl)")
def test_ffmpeg_dies_with_its_parent(tmp_path):
    """The encoder is stopped (SIGSTOP) before its parent is killed, so it cannot end by
    itself on the end of its input, as a busy encoder would not for a long while: only a
    kill tied to the parent's death removes it."""
    script = tmp_path / "child.py"
    script.write_text(VIDEO_EXPORT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "v.mp4")], env=child_env(), cwd=ROOT, stderr=subprocess.PIPE)
    encoder: int | None = None
    try:
        deadline = time.monotonic() + 60
        while encoder is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            encoder = next((c for c in _children(proc.pid) if "pipe:0" in _cmdline(c)), None)  # not imageio's version probe
        assert encoder is not None, f"no encoder appeared: {proc.stderr.read().decode()[-2000:] if proc.poll() is not None else ''}"
        os.kill(encoder, signal.SIGSTOP)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 3
        while _alive(encoder) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(encoder), "ffmpeg outlived the process that started it"
    finally:
        if encoder is not None and _alive(encoder):  # do not leave it behind when the test fails
            os.kill(encoder, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]


def test_an_exception_while_encoding_leaves_no_ffmpeg(tmp_path):
    da = failing_stack(Marks(tmp_path / "marks"))
    before = set(_children(os.getpid()))
    with pytest.raises(xafm.WriteError):
        animation.to_video(da, tmp_path / "v.mp4", zmin=0.0, zmax=5.0)
    assert [p for p in set(_children(os.getpid())) - before if _alive(p)] == []


class Interrupt:
    """A progress callback that raises KeyboardInterrupt (a Ctrl-C) at frame ``at``."""

    def __init__(self, at: int):
        self.at = at

    def __call__(self, done: int, total: int) -> None:
        if done == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("kind", ["mp4", "png"])
def test_a_ctrl_c_between_frames_leaves_no_encoder_and_no_temp(kind, tmp_path):
    da = xafm.stack(np.random.default_rng(2).normal(size=(40, 16, 16)).astype(np.float32), pixel_size_nm=1.0)
    out = tmp_path / "out"
    before = set(_children(os.getpid()))
    with pytest.raises(KeyboardInterrupt):
        if kind == "mp4":
            animation.to_video(da, out / "v.mp4", progress=Interrupt(3))
        else:
            animation.to_frames(da, out / "f_frames", progress=Interrupt(3))
    assert [p for p in set(_children(os.getpid())) - before if _alive(p)] == []
    time.sleep(0.1)  # a frame still being written would land meanwhile
    assert not out.exists() or list(out.iterdir()) == []
