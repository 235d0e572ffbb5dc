"""The on-demand robustness campaign: thousands of mutated files through every reader.

``python -m bench.campaign [--per-seed N] [--timeout S] [--keep DIR] [SAMPLE_ID ...]``

The suite's fuzz family (``tests/test_fuzz.py``) runs a few examples per seed so it
stays fast; this runs as many as asked, each in a worker process the campaign can kill,
so a hang inside a C library (which no Python signal can interrupt) is seen as a hang
and the campaign goes on. Every mutated file must give a stack or an xafm error naming
the file, within the timeout and the memory limit (tracemalloc peak in the worker).

Seeds are the samples of the shared contracts (``tests/samples.py``: the real files of
``../shared/data`` and xafm's own bundles); folder formats are mutated in their
metadata members. Failures are listed by kind, and with ``--keep`` copied out so they
can become regression tests.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEMORY_LIMIT = 512 * 2**20
KINDS = ("flip", "flip", "inflate", "truncate", "inflate")
INFLATE = (2**31 - 1, 2**30, 2**24, 65535, -1, -(2**31), 10**9)

WORKER = r"""
import json, logging, sys, tracemalloc, warnings
sys.path.insert(0, sys.argv[1])
logging.disable(logging.CRITICAL)
import xafm
tracemalloc.start()
for line in sys.stdin:
    path = json.loads(line)
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    outcome, detail, da = "ok", "", None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            da = xafm.open(path)
            if da.ndim < 3 or da.dims[-2:] != ("y", "x"):
                outcome, detail = "bad-stack", str(da.dims)
        except xafm.XafmError as exc:
            outcome = "xafm-error" if path in str(exc) else "unnamed-error"
            detail = f"{type(exc).__name__}: {exc}"[:300]
        except BaseException as exc:
            outcome, detail = "foreign-error", f"{type(exc).__name__}: {exc}"[:300]
    peak = tracemalloc.get_traced_memory()[1] - base
    del da
    print(json.dumps([outcome, detail, peak]), flush=True)
"""


def mutate(data: bytes, rnd: random.Random) -> bytes:
    """The suite's mutations: byte flips (mostly in the header), truncation, and 32-bit
    fields overwritten with sizes that lie."""
    buf = bytearray(data)
    if not buf:
        return b""
    kind = rnd.choice(KINDS)
    if kind == "truncate":
        return bytes(buf[: rnd.randrange(len(buf))])
    if kind == "flip":
        for _ in range(rnd.randint(1, 16)):
            pos = rnd.randrange(min(len(buf), 8192)) if rnd.random() < 0.6 else rnd.randrange(len(buf))
            buf[pos] = rnd.randrange(256)
        return bytes(buf)
    pos = rnd.randrange(max(1, min(len(buf), 4096) - 4))
    buf[pos : pos + 4] = struct.pack(rnd.choice("<>") + "i", rnd.choice(INFLATE))
    return bytes(buf)


def _metadata_members(folder: Path) -> list[Path]:
    names = {"zarr.json", ".zattrs", ".zarray", ".zgroup", "metadata.json"}
    return sorted(p for p in folder.rglob("*") if p.is_file() and (p.name in names or p.suffix == ".json"))


class Worker:
    """A reader process fed one path per line; killed and replaced when it hangs."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(ROOT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )

    def read(self, path: Path, timeout: float) -> tuple[str, str, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(str(path)) + "\n")
        self.proc.stdin.flush()
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            self.close()
            return "hang", f"no answer in {timeout} s", 0
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            return "crash", f"worker exited with {code}", 0
        outcome, detail, peak = json.loads(line)
        if outcome in ("ok", "xafm-error") and peak > MEMORY_LIMIT:
            outcome = "memory"  # an error that came only after an absurd allocation counts too
        if peak > MEMORY_LIMIT:
            detail = f"peak {peak / 2**20:.0f} MiB; {detail}"
        return outcome, detail, int(peak)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("samples", nargs="*", help="sample ids (tests/samples.py); default: all")
    ap.add_argument("--per-seed", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--keep", type=Path, help="copy every failing file here")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from tests import samples as S

    rnd = random.Random(args.seed)
    totals: Counter[str] = Counter()
    failures: list[tuple[str, str, str]] = []
    worker = Worker()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for sample in S.SAMPLES + S.NOT_IMAGES:
            if args.samples and sample.id not in args.samples:
                continue
            try:
                seed = S.make(sample, root / "seeds" / sample.id.replace("/", "_"))
            except BaseException as exc:  # a real file absent here: say so and go on
                print(f"skip {sample.id}: {exc}")
                continue
            counts: Counter[str] = Counter()
            for i in range(args.per_seed):
                case = root / "case"
                shutil.rmtree(case, ignore_errors=True)
                case.mkdir()
                target = case / seed.name
                if seed.is_dir():
                    shutil.copytree(seed, target)
                    members = _metadata_members(target)
                    if not members:
                        break
                    victim = rnd.choice(members)
                    victim.write_bytes(mutate(victim.read_bytes(), rnd))
                else:
                    target.write_bytes(mutate(seed.read_bytes(), rnd))
                if worker.proc.poll() is not None:
                    worker = Worker()
                outcome, detail, _ = worker.read(target, args.timeout)
                if outcome in ("hang", "crash"):
                    worker = Worker()
                counts[outcome] += 1
                if outcome not in ("ok", "xafm-error"):
                    failures.append((sample.id, outcome, detail))
                    if args.keep:
                        dst = args.keep / f"{sample.id}-{i}-{outcome}{''.join(seed.suffixes)}"
                        args.keep.mkdir(parents=True, exist_ok=True)
                        (shutil.copytree if target.is_dir() else shutil.copyfile)(target, dst)
            totals.update(counts)
            print(f"{sample.id:40s} " + " ".join(f"{k}={v}" for k, v in sorted(counts.items())), flush=True)
    worker.close()
    elapsed = time.perf_counter() - start
    print(f"\n{sum(totals.values())} files in {elapsed:.0f} s: " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))
    for sid, outcome, detail in failures[:50]:
        print(f"  {outcome:14s} {sid}: {detail}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
