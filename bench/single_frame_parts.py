"""Benchmark: where a lazy single-frame fetch spends its time (issue 16, "Single frames").

Run from the project root: ``python -m bench.single_frame_parts [--rounds 15] [--only NAME ...]``
(files as in :mod:`bench.single_frame`, which makes the synthetic ones).

For each file, the same random frames are fetched by each part of the way, in interleaved
rounds (the order reversed every other round), timed in **thread CPU time** so that the
other processes of a shared machine count less; the median over rounds is printed in us
per fetch:

* ``reopen``: the raw library reopening the file (as in ``bench.single_frame``);
* ``isel, in memory``: ``da.isel(time=i).values`` of the eager stack (xarray alone);
* ``isel, lazy``: ``da.isel(time=i)`` of the ``lazy=True`` stack, nothing read;
* ``read``: the xafm lazy array under it asked for frame ``i`` (the reader, its checks);
* ``lazy``: the whole fetch, ``da.isel(time=i).values``;
* ``rest``: ``lazy - isel, lazy - read``: what the whole costs beyond its parts timed
  apart (the frame read between two ``isel`` evicts what the next ``isel`` uses from the
  CPU caches).
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from typing import Any

import numpy as np

from bench.single_frame import _source, arguments, raw_methods


def parts(path: str, n_fetch: int, rounds: int) -> dict[str, float] | None:
    import xafm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lazy, eager = xafm.open(path, lazy=True), xafm.open(path)
    if "time" not in lazy.dims:
        return None
    extra = {d: 0 for d in lazy.dims if d not in ("time", "y", "x")}
    lazy, eager = lazy.isel(extra), eager.isel(extra)
    _, reopen, _ = raw_methods(path, lazy)
    if reopen is None:
        return None
    src = _source(lazy)
    if src.ndim != 3:  # the bench reads (time, y, x) sources only
        return None
    idx = [int(i) for i in np.random.default_rng(16).integers(0, lazy.sizes["time"], n_fetch)]
    whole = (slice(None), slice(None))
    methods: dict[str, Any] = {
        "reopen": reopen,
        "isel, in memory": lambda i: eager.isel(time=i).values,
        "isel, lazy": lambda i: lazy.isel(time=i),
        "read": lambda i: src[(i, *whole)],
        "lazy": lambda i: lazy.isel(time=i).values,
    }
    times: dict[str, list[float]] = {k: [] for k in methods}
    for r in range(rounds):
        for name in list(methods) if r % 2 == 0 else list(methods)[::-1]:
            fetch = methods[name]
            t0 = time.thread_time()
            for i in idx:
                fetch(i)
            times[name].append((time.thread_time() - t0) / len(idx) * 1e6)
    out = {k: statistics.median(v) for k, v in times.items()}
    out["rest"] = out["lazy"] - out["isel, lazy"] - out["read"]
    return out


def main() -> None:
    from bench.read_asd import machine

    args, files = arguments(__doc__.splitlines()[0], rounds=15)
    cols = ("reopen", "isel, in memory", "isel, lazy", "read", "lazy", "rest")
    print(f"# {machine()}; {args.frames} random frames, median of {args.rounds} interleaved rounds; us of thread CPU time per fetch")
    print("| file | " + " | ".join(cols) + " | lazy/reopen | in memory/reopen |")
    print("|---|" + "---:|" * (len(cols) + 2))
    for path in files:
        r = parts(path, args.frames, args.rounds)
        if r is None:
            continue
        cells = " | ".join(f"{r[c]:.0f}" for c in cols)
        print(f"| {os.path.basename(path)} | {cells} | {r['lazy'] / r['reopen']:.2f} | {r['isel, in memory'] / r['reopen']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
