"""Throughput of ``to_ome_zarr`` for a lazily generated 2 GiB dask stack, threaded vs a
two-worker ``LocalCluster``, and the peak memory (RSS) of the client process.

Each configuration runs in a fresh subprocess so that its peak RSS (``ru_maxrss``) is its
own. Usage: ``python -m bench.zarr_scaling [--gib 2] [--size 512] [--levels 1] [--repeat 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _stack(gib: float, size: int):
    import dask.array as dsa
    import numpy as np

    import xafm

    frames = int(gib * 2**30 // (size * size * 4))
    data = dsa.random.default_rng(0).random((frames, size, size), chunks=(4, size, size), dtype=np.float32)
    return xafm.stack(data, pixel_size_nm=1.0, times=np.arange(frames) * 0.01)


def run_one(mode: str, gib: float, size: int, levels: int, folder: Path) -> dict:
    """One configuration, in this process: returns seconds, GiB/s and peak client RSS."""
    import dask

    from xafm.formats import omezarr

    da = _stack(gib, size)
    nbytes = da.data.nbytes
    cluster = client = None
    startup = 0.0
    if mode == "distributed":
        import logging

        from distributed import Client, LocalCluster

        t0 = time.perf_counter()
        cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
        startup = time.perf_counter() - t0
        ctx = dask.config.set({})
    else:
        ctx = dask.config.set(scheduler="threads")
    path = folder / f"{mode}.ome.zarr"
    with ctx:
        t0 = time.perf_counter()
        da.data.sum().compute()  # generating the values alone (also warms the scheduler up)
        generate = time.perf_counter() - t0
        t0 = time.perf_counter()
        omezarr.write(da, path, levels=levels, overwrite=True)
        seconds = time.perf_counter() - t0
    worker_rss = None
    if client is not None:
        worker_rss = [r / 2**20 for r in client.run(lambda: __import__("resource").getrusage(__import__("resource").RUSAGE_SELF).ru_maxrss * 1024).values()]
        client.close()
        cluster.close()
    stored = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    shutil.rmtree(path)
    return {
        "mode": mode,
        "gib": nbytes / 2**30,
        "levels": levels,
        "seconds": round(seconds, 2),
        "gib_per_s": round(nbytes / 2**30 / seconds, 3),
        "generate_only_s": round(generate, 2),
        "cluster_startup_s": round(startup, 2),
        "client_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "worker_peak_rss_mib": [round(r, 1) for r in worker_rss] if worker_rss else None,
        "stored_gib": round(stored / 2**30, 3),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--levels", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--one", choices=["threads", "distributed"], help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.gib, args.size, args.levels, Path(args.folder))))
        return []
    results = []
    folder = Path(tempfile.mkdtemp(prefix="xafm-zarr-bench-"))
    try:
        for _ in range(args.repeat):
            for mode in ("threads", "distributed"):
                cmd = [sys.executable, "-m", "bench.zarr_scaling", "--one", mode, "--gib", str(args.gib),
                       "--size", str(args.size), "--levels", str(args.levels), "--folder", str(folder)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
                results.append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(json.dumps(results[-1]), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}))
    return results


if __name__ == "__main__":
    main()
