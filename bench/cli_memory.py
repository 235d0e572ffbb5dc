"""``python -m bench.cli_memory``: peak memory of the command line converting files larger
than the streaming block (2 GiB by default), each conversion in its own process.

The CLI opens inputs with their preferred chunks (whole frames, about 32 MiB a chunk)
and writes block by block, so its peak RSS stays near the interpreter's own size however
large the file. The peak is the child's ``VmHWM`` (``ru_maxrss`` would report the larger
parent's, kept across ``exec``). ``--xafm-src DIR`` runs another checkout of xafm (an
older commit, say) on the same files, for a before/after figure in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ._peak_rss import REPORT_AT_EXIT, peak_mib

#: Runs the CLI and reports this process's peak RSS (KiB) on stderr when it exits.
_CHILD = REPORT_AT_EXIT + r"""
import sys
from xafm.cli import main
code = main(sys.argv[1:])
sys.exit(code)
"""


def make_inputs(folder: Path, gib: float, size: int) -> dict[str, Path]:
    """A float32 HDF5 bundle and an int16 ``.asd`` video of about ``gib`` GiB each."""
    import dask.array as dsa

    import xafm
    from xafm.testing import write_asd

    n32 = int(gib * 2**30 // (size * size * 4))
    arr = dsa.random.default_rng(0).standard_normal((n32, size, size), chunks=(16, size, size), dtype=np.float32)
    h5 = xafm.stack(arr, pixel_size_nm=1.0).afm.to_h5(folder / "big.h5")
    n16 = int(gib * 2**30 // (size * size * 2))
    rng = np.random.default_rng(1)
    levels = np.lib.format.open_memmap(folder / "levels.npy", mode="w+", dtype=np.int16, shape=(n16, size, size))
    for a in range(0, n16, 256):
        levels[a : a + 256] = rng.integers(0, 4096, size=levels[a : a + 256].shape, dtype=np.int16)
    asd = write_asd(folder / "big.asd", levels, frame_time_ms=20.0, x_nm=size, y_nm=size)
    del levels
    (folder / "levels.npy").unlink()
    return {"h5": h5, "asd": asd}


def convert(src: Path, out: Path, args: list[str], xafm_src: Path | None) -> dict[str, float]:
    env = dict(os.environ)
    if xafm_src is not None:
        env["PYTHONPATH"] = f"{xafm_src}{os.pathsep}{env.get('PYTHONPATH', '')}"
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, "convert", str(src), "--output-folder", str(out), "--overwrite", *args],
        capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(),
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    if res.returncode:
        raise RuntimeError(f"xafm convert {src.name} {' '.join(args)} failed:\n{res.stderr[-2000:]}")
    written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": seconds, "peak_rss_mib": peak_mib(res.stderr), "written_gib": written / 2**30}


CASES = (
    ("h5", ["--export", "tif"]),
    ("asd", ["--export", "h5"]),
    ("asd", ["--make-video", "mp4", "--no-draw-ts"]),
)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--gib", type=float, default=2.0, help="size of each input file")
    p.add_argument("--size", type=int, default=512, help="frame side in pixels")
    p.add_argument("--xafm-src", type=Path, default=None, help="also run the xafm package found in this folder")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="xafm-cli-memory-"))
    try:
        print(f"machine: {platform.platform()}, {os.cpu_count()} cores, python {platform.python_version()}")
        inputs = make_inputs(folder, args.gib, args.size)
        for name, path in inputs.items():
            print(f"input {name}: {path.stat().st_size / 2**30:.2f} GiB")
        rows = []
        for kind, flags in CASES:
            for label, src in (("xafm", None), ("other", args.xafm_src)):
                if label == "other" and src is None:
                    continue
                got = convert(inputs[kind], folder / "out", flags, src)
                rows.append({"code": label, "input": kind, "flags": " ".join(flags), **got})
                print(f"{label:<6} {kind:<4} {' '.join(flags):<32} {got['seconds']:7.1f} s  peak RSS {got['peak_rss_mib']:7.0f} MiB  wrote {got['written_gib']:.2f} GiB")
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
