"""Damage the global heap of HDF5 files every way its object headers allow; nothing may hang.

For each seed (playNano's and xafm's ``.h5`` bundles, an ``.h5-jpk`` with variable-length
attributes, the real ``.topostats`` and ``.nhf`` samples when present), every field of every
object header in every global heap collection (index, reference count, size) and the
collection's own size are set to values around the ones HDF5's walk trips on (0, 1, 8, 15,
16, 17, 2**16-1, 2**31, 2**63). Each damaged copy is opened with ``xafm.open`` and
``xafm.channels`` in a forked child that is killed after ``--timeout`` seconds: a kill is
a hang. Only xafm's errors may come out. Usage::

    python -m bench.hdf5_heap_campaign [--timeout 30] [--limit N] [--string-timeout 1]

Prints one line per seed (files tried, read, refused, hangs, other errors) and exits
non-zero on any hang or non-xafm error. The test suite runs a few of these cases
(``tests/test_guard_hdf5.py``); this is the campaign behind them.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import struct
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "afm"
VALUES = (0, 1, 8, 15, 16, 17, 2**16 - 1, 2**31, 2**63)


def _seeds(folder: Path) -> dict[str, Path]:
    import h5py

    import xafm
    from xafm.testing.h5jpk import write_h5jpk
    from xafm.testing.playnano import write_playnano_h5

    out: dict[str, Path] = {}
    out["playnano.h5"] = Path(write_playnano_h5(folder / "playnano.h5", np.zeros((3, 4, 5), np.float32)))
    out["own.h5"] = xafm.stack(np.zeros((3, 4, 5), np.float32), pixel_size_nm=1.0).afm.to_h5(folder / "own.h5")
    raw = np.zeros((2, 4, 5), np.int32)
    jpk = write_h5jpk(folder / "vlen.h5-jpk", [{"name": "height", "retrace": False, "raw": raw}])
    with h5py.File(jpk, "r+") as f:
        f["Measurement_000"].attrs["motion"] = "topDown"
        f["Measurement_000/Channel_000"].attrs["channel.name"] = "height"
    out["vlen.h5-jpk"] = Path(jpk)
    for name in ("sample_0_1.topostats", "nanosurf_wavemode.nhf"):
        if (SHARED / name).exists():
            out[name] = SHARED / name
    return out


def _collections(data: bytes) -> list[tuple[int, int]]:
    found, start = [], 0
    while (start := data.find(b"GCOL\x01", start)) >= 0:
        found.append((start, struct.unpack_from("<Q", data, start + 8)[0]))
        start += 4
    return found


def _mutations(data: bytes):
    """(description, damaged bytes) for every header field of every heap object."""
    for start, size in _collections(data):
        for value in VALUES:
            buf = bytearray(data)
            struct.pack_into("<Q", buf, start + 8, value)
            yield f"collection@{start} size={value}", bytes(buf)
        pos = start + 16
        while pos + 16 <= min(start + size, len(data)):
            index, _, _, osize = struct.unpack_from("<HHIQ", data, pos)
            for field, offset, fmt in (("index", 0, "<H"), ("refcount", 2, "<H"), ("size", 8, "<Q")):
                for value in VALUES:
                    if fmt == "<H" and value > 0xFFFF:
                        continue
                    buf = bytearray(data)
                    struct.pack_into(fmt, buf, pos + offset, value)
                    yield f"object@{pos} {field}={value}", bytes(buf)
            if index == 0:
                break
            pos += 16 + (osize + 7) // 8 * 8


def _open_in_child(path: Path, timeout: float) -> str:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            import xafm

            try:
                xafm.open(path)
                xafm.channels(path)
                outcome = "read"
            except xafm.XafmError as exc:
                outcome = "refused" if str(path) in str(exc) else f"error not naming the file: {exc}"
            except Exception as exc:  # the campaign reports it
                outcome = f"other {type(exc).__name__}: {exc}"
            os.write(w, json.dumps(outcome).encode())
        finally:
            os._exit(0)
    os.close(w)
    ready, _, _ = select.select([r], [], [], timeout)
    data = os.read(r, 1 << 16) if ready else b""
    os.close(r)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return json.loads(data) if data else ("hang" if not ready else "child died")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a child counts as hung")
    parser.add_argument("--limit", type=int, default=0, help="at most this many mutations per seed (0: all)")
    parser.add_argument("--string-timeout", type=float, default=1.0, help="xafm's own bound on a heap read (TIMEOUT_S)")
    args = parser.parse_args()
    from xafm.formats import _h5strings  # imported once here, inherited by every forked child

    _h5strings.TIMEOUT_S = args.string_timeout

    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, seed in _seeds(folder).items():
            counts: Counter[str] = Counter()
            raw = seed.read_bytes()
            for k, (what, damaged) in enumerate(_mutations(raw)):
                if args.limit and k >= args.limit:
                    break
                target = folder / f"damaged-{seed.name}"
                target.write_bytes(damaged)
                outcome = _open_in_child(target, args.timeout)
                kind = outcome if outcome in ("read", "refused") else "hang" if outcome == "hang" else "other"
                counts[kind] += 1
                if kind not in ("read", "refused"):
                    bad += 1
                    print(f"  {name}: {what}: {outcome}")
            print(f"{name}: {sum(counts.values())} damaged copies: {dict(counts)}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
