"""Benchmark: reading a long ``.asd`` video eagerly with xafm, against the bare limit and AFMReader.

Run from the project root: ``python -m bench.read_asd [--frames 3000 --size 128]``.

* (a) ``xafm.open(path)`` (eager: header, lazy array, xarray, load),
* (b) the bare limit: ``np.fromfile`` of the frame region (int16, frame headers included)
  plus the level -> nm arithmetic to float64, nothing else,
* (c) ``AFMReader.asd.load_asd`` if it is installed (it is GPL, so it is never a dependency
  of xafm; install it in a separate venv to compare).

Each is timed best of ``--repeat`` (interleaved rounds after an untimed warm-up round) on a
file in the page cache (written and synced just before), in one run, and the ratios are
printed. Also printed: the lazy open (``chunks={}``) time.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def interleaved_best(candidates: dict[str, object], repeat: int) -> dict[str, float]:
    """Best wall time of each candidate over ``repeat`` rounds, after one untimed warm-up
    round. Candidates take turns within a round, so load from other processes on the
    machine hits all of them alike rather than whichever happened to run at a bad moment."""
    best = {name: float("inf") for name in candidates}
    for round_ in range(repeat + 1):
        for name, fn in candidates.items():
            t0 = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t0
            del out
            if round_:
                best[name] = min(best[name], dt)
    return best


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu or 'unknown CPU'}; {cores} cores usable; Python {platform.python_version()}; numpy {np.__version__}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    import xafm
    from xafm.formats import asd
    from xafm.testing import write_asd

    n, size = args.frames, args.size
    rng = np.random.default_rng(0)
    levels = rng.integers(0, 4096, size=(n, size, size), dtype=np.int16)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.asd"
        write_asd(path, levels, frame_time_ms=50.0, z_gain=2.0, z_extension=12.48, ad_range=0x3)
        del levels
        with open(path, "rb+") as fh:  # no disk write-back running during the timings
            os.fsync(fh.fileno())
        mb = path.stat().st_size / 2**20
        print(f"machine: {machine()}")
        print(f"file: {n} frames of {size} x {size} int16, {mb:.1f} MiB, version 1, one channel")

        header = asd.read_header(os.fspath(path))
        scale, add, _ = asd.conversion(os.fspath(path), header, "TP")
        offset, stride = header.data_offset, header.frame_stride

        def bare():
            raw = np.fromfile(path, dtype="<i2", count=n * stride // 2, offset=offset)
            frames = raw.reshape(n, stride // 2)[:, header.frame_header_length // 2 :]
            out = np.multiply(frames, scale, dtype=np.float64)
            if add is not None:
                out += add
            return out.reshape(n, size, size)

        def xafm_eager():
            return xafm.open(path).values

        got, ref = xafm_eager(), bare()
        assert np.array_equal(got, ref), "xafm and the bare read disagree"
        del got
        candidates = {
            "xafm.open(path) eager": xafm_eager,
            "bare limit: np.fromfile + scaling": bare,
        }
        try:
            from AFMReader.asd import load_asd
        except ImportError:
            load_asd = None
        if load_asd is not None:
            try:  # AFMReader logs every step through loguru; keep the benchmark output readable
                from loguru import logger

                logger.remove()
            except ImportError:
                pass
            res = load_asd(path, "TP")[0]
            if not np.allclose(res, ref, rtol=1e-12, atol=0):
                print("warning: AFMReader's values differ from xafm's")
            del res
            candidates["AFMReader load_asd (eager)"] = lambda: load_asd(path, "TP")[0]
        del ref
        candidates["xafm.open(path, chunks={}) (lazy)"] = lambda: xafm.open(path, chunks={})
        best = interleaved_best(candidates, args.repeat)

    print(f"best of {args.repeat} (interleaved rounds, after a warm-up round):")
    for label, t in best.items():
        rate = f"{mb / t:8.0f} MiB/s" if "lazy" not in label else ""
        print(f"  {label:<36} {t * 1e3:9.1f} ms  {rate}")
    t_xafm, t_bare = best["xafm.open(path) eager"], best["bare limit: np.fromfile + scaling"]
    print(f"xafm / bare limit: {t_xafm / t_bare:.2f}x (target <= 1.5x)")
    if load_asd is None:
        print("AFMReader: not installed")
    else:
        t_afmr = best["AFMReader load_asd (eager)"]
        print(f"AFMReader / xafm: {t_afmr / t_xafm:.2f}x (xafm faster when > 1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
