"""Remote reads and writes against local disk, in one interleaved run (issue 15).

For a synthetic stack (default 120 frames of 256x256 float32, 30 MiB) written as OME-Zarr
(one frame a chunk), .h5, .asd-free formats and OME-TIFF, served by moto's S3 server and
by Python's http.server on 127.0.0.1 (tests/servers.py), each round measures, per store:

- open latency: ``xafm.open(url, chunks={})`` (a format whose reader does not take URLs
  yet is reported as such, with the error),
- frames per second of a random-access read of 50 frames (one ``.values`` each), and the
  requests and bytes per frame the server counted,
- OME-Zarr write throughput (MB/s) to the S3 server and to local disk.

Rounds interleave local, S3 and HTTP so that the load of a shared machine hits all alike;
the median of the rounds is printed as JSON. Usage: ``python -m bench.remote [--frames 120]
[--size 256] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

FORMATS = {"zarr": ("to_ome_zarr", ".ome.zarr", {"chunks": (1, None, None)}), "h5": ("to_h5", ".h5", {}), "tif": ("to_ome_tiff", ".ome.tif", {})}


def _stack(frames: int, size: int) -> Any:
    import xafm

    data = np.random.default_rng(0).normal(size=(frames, size, size)).astype(np.float32)
    return xafm.stack(data, pixel_size_nm=1.0, times=np.arange(frames) * 0.01)


def _write(da: Any, fmt: str, where: str, **extra: Any) -> None:
    method, _suffix, opts = FORMATS[fmt]
    opts = dict(opts)
    if "chunks" in opts:
        opts["chunks"] = (1, da.sizes["y"], da.sizes["x"])
    getattr(da.afm, method)(where, **opts, **extra)


def _read(url: str, order: np.ndarray, server: Any, options: dict | None, direct: bool = False) -> dict[str, Any]:
    """Open latency, fps of the random-access read, requests and bytes per frame."""
    import xafm
    from xafm.core import sources
    from xafm.formats import omezarr

    extra = {"storage_options": options} if options else {}
    via = "xafm.open"
    t0 = time.perf_counter()
    try:
        if direct:  # the format's own reader, as the URLs are read until xafm.open takes them
            raise LookupError("the format's reader asked for")
        da = xafm.open(url, chunks={}, **extra)
    except Exception as exc:
        if not url.endswith(".ome.zarr") or not (direct or sources.is_url(url)):  # a reader without URL support yet: say so
            return {"error": f"{type(exc).__name__}: {str(exc)[:120]}"}
        # the entry points' URL support is another branch's: the format's own reader
        sources.remember_options(url, options)
        t0, via = time.perf_counter(), "omezarr.read"
        ds = omezarr.read(url)
        da = ds[next(iter(ds.data_vars))]
    opened = time.perf_counter() - t0
    if server is not None:
        server.clear()
    t0 = time.perf_counter()
    for i in order:
        np.asarray(da[int(i)].values)
    took = time.perf_counter() - t0
    out: dict[str, Any] = {"open_s": opened, "fps": len(order) / took, "via": via}
    if server is not None:
        reqs = server.requests
        out["requests_per_frame"] = len(reqs) / len(order)
        out["kib_per_request"] = (sum(r.nbytes for r in reqs if r.method == "GET") / max(1, sum(r.method == "GET" for r in reqs))) / 1024
    return out


def main() -> None:
    from tests.servers import HttpServer, S3Server
    from xafm.core import sources

    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    da = _stack(a.frames, a.size)
    mb = da.nbytes / 1e6
    order = np.random.default_rng(1).permutation(a.frames)[:50]
    tmp = Path(tempfile.mkdtemp(prefix="xafm-bench-remote-"))
    www = tmp / "www"
    www.mkdir()
    s3, http = S3Server().start(), HttpServer(www).start()
    opts = s3.storage_options
    s3.make_bucket("bench")
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        for fmt, (_m, suffix, _o) in FORMATS.items():  # the read fixtures, once
            _write(da, fmt, str(www / f"s{suffix}"), overwrite=True, fsync=False)
            _write(da, fmt, f"s3://bench/s{suffix}", storage_options=opts, overwrite=True)
        for r in range(a.rounds):
            for where in ("local", "s3", "http"):
                for fmt, (_m, suffix, _o) in FORMATS.items():
                    url = {"local": str(www / f"s{suffix}"), "s3": f"s3://bench/s{suffix}", "http": http.url_of(f"s{suffix}")}[where]
                    server = {"local": None, "s3": s3, "http": http}[where]
                    results.setdefault(f"read {fmt} {where}", []).append(_read(url, order, server, opts if where == "s3" else None))
                    if fmt == "zarr" and where == "local":  # the same reader as the URLs use, no dask
                        results.setdefault("read zarr local (omezarr.read)", []).append(_read(url, order, None, None, direct=True))
            for where in ("local", "s3"):
                dest = str(tmp / f"w{r}.ome.zarr") if where == "local" else f"s3://bench/w{r}-{uuid.uuid4().hex[:6]}.ome.zarr"
                s3.clear()
                t0 = time.perf_counter()
                _write(da, "zarr", dest, **({"storage_options": opts} if where == "s3" else {"fsync": True}))
                took = time.perf_counter() - t0
                row = {"MB_per_s": mb / took, "s": took}
                if where == "s3":
                    row["requests"] = len(s3.requests)
                    row["MiB_per_PUT"] = sum(q.nbytes for q in s3.requests if q.method == "PUT") / max(1, sum(q.method == "PUT" for q in s3.requests)) / 2**20
                results.setdefault(f"write zarr {where}", []).append(row)
    finally:
        s3.stop()
        http.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        del sources
    summary: dict[str, Any] = {"machine": f"{platform.machine()}, {platform.python_version()}", "stack_MB": mb, "frames": a.frames, "size": a.size}
    for name, rows in results.items():
        if any("error" in row for row in rows):
            summary[name] = rows[0]
            continue
        summary[name] = {k: (round(statistics.median(row[k] for row in rows), 4) if k != "via" else rows[0][k]) for k in rows[0]}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
