"""Benchmark: the folder index (``xafm.index``, ``xafm index FOLDER``) reads headers only.

Run from the project root: ``python -m bench.index [--folder ../shared/data] [--copies 20]``.

* the command line, cold (a new ``python -m xafm index FOLDER -r --format json``), against
  ``python -c "import xafm.cli"`` (what starting Python and importing costs anyway),
* the index in process, warm: wall time, files a second, the bytes the process read
  (``/proc/self/io`` ``rchar``) against the bytes of the files it listed, and the calls of
  any lazy array's ``_read`` (pixel data; must be 0),
* the two ways of opening a file lazily: ``registry.open_dataset`` (what the index uses:
  lazy backend arrays, no dask) and ``xafm.open(path, chunks={})`` (a dask graph too),
* the same folder with every file linked ``--copies`` times (a lab folder of hundreds of
  files), and a ``.asd`` video of ``--frames`` frames: its row costs what a short one's does.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from bench.read_asd import machine

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def rchar() -> int:
    """Bytes this process has read through read-like system calls so far (Linux)."""
    with open("/proc/self/io") as fh:
        for line in fh:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise RuntimeError("no rchar in /proc/self/io")


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def count_reads() -> list[str]:
    """Wrap every lazy array class's ``_read``; the list grows by one per call."""
    from xafm import builtin_index
    from xafm.core.lazy import LazyArray

    builtin_index.builtin_declarations()  # every format module imported, so every LazyArray subclass exists
    calls: list[str] = []
    todo = [LazyArray]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if "_read" in vars(cls):
            original = vars(cls)["_read"]

            def counted(self: Any, key: Any, _original: Any = original, _name: str = cls.__name__) -> Any:
                calls.append(_name)
                return _original(self, key)

            cls._read = counted  # type: ignore[method-assign]
    return calls


def timed(fn: Any, repeat: int) -> float:
    """Median wall time of ``repeat`` calls after one untimed call."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cold(argv: list[str], repeat: int) -> float:
    def run() -> None:
        subprocess.run([sys.executable, *argv], check=True, capture_output=True, cwd=Path(__file__).resolve().parents[1])

    return timed(run, repeat)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=SHARED)
    ap.add_argument("--copies", type=int, default=20)
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    print(machine())

    import xafm
    from xafm import registry

    folder = args.folder
    t_cli = cold(["-m", "xafm", "index", str(folder), "-r", "--format", "json"], args.repeat)
    t_import = cold(["-c", "import xafm.cli"], args.repeat)
    print(f"cold: xafm index {folder} -r: {t_cli:.2f} s; python -c 'import xafm.cli': {t_import:.2f} s")

    calls = count_reads()
    df = xafm.index(folder, recursive=True)
    listed = [folder / p for p in df["path"]]
    total = sum(size_of(p) for p in listed)
    before = rchar()
    t_warm = timed(lambda: xafm.index(folder, recursive=True), args.repeat)
    read = (rchar() - before) / (args.repeat + 1)
    print(f"warm: {len(df)} rows ({(df['error'] != '').sum()} with an error) in {t_warm * 1e3:.0f} ms "
          f"({len(df) / t_warm:.0f} files/s); read {read / 2**20:.2f} MiB of the {total / 2**20:.1f} MiB listed "
          f"({100 * read / total:.1f} %); lazy _read calls: {len(calls)}")
    by_format = df.groupby("format")["path"].apply(lambda ps: sum(size_of(folder / p) for p in ps))
    gwy = by_format.get("gwy", 0)
    print(f"  of which Gwyddion files (read whole by their reader): {gwy / 2**20:.2f} MiB")

    readable = [p for p, e in zip(listed, df["error"]) if not e]

    def open_all(opener: Any) -> None:
        for p in readable:
            opener(p)

    t_reg = timed(lambda: open_all(registry.open_dataset), args.repeat)
    t_open = timed(lambda: open_all(lambda p: xafm.open(p, chunks={})), args.repeat)
    t_chan = timed(lambda: open_all(registry.channels), args.repeat)
    print(f"opening the {len(readable)} readable files: registry.open_dataset {t_reg * 1e3:.0f} ms, "
          f"xafm.open(chunks={{}}) {t_open * 1e3:.0f} ms ({t_open / t_reg:.2f}x); registry.channels {t_chan * 1e3:.0f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        many = Path(tmp) / "many"
        many.mkdir()
        for p in listed:
            for i in range(args.copies):
                (many / f"{i:03d}_{p.name}").symlink_to(p.resolve())
        t_many = timed(lambda: xafm.index(many), max(1, args.repeat // 2))
        n = len(list(many.iterdir()))
        print(f"{n} files ({args.copies} links to each): {t_many:.2f} s ({n / t_many:.0f} files/s)")

        import numpy as np

        from xafm.testing import write_asd

        video = Path(tmp) / "video"
        video.mkdir()
        levels = (np.arange(args.frames * 256 * 256, dtype=np.int64).reshape(args.frames, 256, 256) % 4096).astype(np.int16)
        write_asd(video / "long.asd", levels, frame_time_ms=50.0)
        write_asd(video / "short.asd", levels[:2], frame_time_ms=50.0)
        del levels
        for name in ("long.asd", "short.asd"):
            one = Path(tmp) / name.split(".")[0]
            one.mkdir()
            (one / name).symlink_to(video / name)
            t = timed(lambda one=one: xafm.index(one), args.repeat)
            print(f"{name}: {(video / name).stat().st_size / 2**20:.1f} MiB, indexed in {t * 1e3:.1f} ms")
    print(f"lazy _read calls over the whole run (indexes and opens): {len(calls)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
