"""playNano 0.5 as a reference, run in its own environment (GPL: never imported here).

``run_pipeline(stack, pipeline)`` saves the stack, runs ``tests/playnano_side.py`` with the
Python of an environment that has playNano and returns what it wrote. That Python is
``$XAFM_PLAYNANO_PYTHON``, else ``../bench-venv/bin/python`` beside the project; without
one the comparison tests skip with the reason (playNano is an optional reference, not part
of xafm's test environment, so they skip under CI too).
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SIDE = Path(__file__).with_name("playnano_side.py")


def python() -> str | None:
    """The Python of an environment with playNano 0.5, or None."""
    candidates = [os.environ.get("XAFM_PLAYNANO_PYTHON"), str(ROOT.parent / "bench-venv" / "bin" / "python")]
    for exe in candidates:
        if exe and Path(exe).exists():
            probe = subprocess.run([exe, "-c", "import playnano"], capture_output=True, timeout=120)
            if probe.returncode == 0:
                return exe
    return None


def require() -> str:
    exe = python()
    if exe is None:
        pytest.skip("playNano 0.5 is not installed in a separate environment (set XAFM_PLAYNANO_PYTHON)")
    return exe


_WORKER: subprocess.Popen[str] | None = None


def _worker() -> subprocess.Popen[str]:
    """The session's playNano worker (``playnano_side.py --serve``), started on first use
    and stopped when the tests end; started again if it died."""
    global _WORKER
    if _WORKER is None or _WORKER.poll() is not None:
        exe = require()
        _WORKER = subprocess.Popen(
            [exe, str(SIDE), "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        atexit.register(_stop, _WORKER)
    return _WORKER


def _stop(worker: subprocess.Popen[str]) -> None:
    if worker.poll() is None:
        assert worker.stdin is not None
        worker.stdin.close()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


def run_pipeline(stack: np.ndarray, pipeline: str, *, pixel_size_nm: float = 1.0, timestamps: Any = None) -> dict[str, Any]:
    """What playNano's pipeline makes of ``stack``: ``data``, ``timestamps``, ``masks``
    (key -> bool array), ``processed`` (key -> array) and ``provenance`` (JSON text)."""
    worker = _worker()
    stack = np.asarray(stack, dtype=np.float64)
    times = np.arange(stack.shape[0], dtype=np.float64) if timestamps is None else np.asarray(timestamps, dtype=np.float64)
    with tempfile.TemporaryDirectory(prefix="xafm-playnano-") as d:
        src, dst = Path(d) / "in.npz", Path(d) / "out.npz"
        np.savez(src, stack=stack, pixel_size_nm=np.float64(pixel_size_nm), timestamps=times)
        assert worker.stdin is not None and worker.stdout is not None
        worker.stdin.write(json.dumps([str(src), str(dst), pipeline]) + "\n")
        worker.stdin.flush()
        answer = worker.stdout.readline().strip()
        if answer != "ok":
            detail = json.loads(answer[len("error "):]) if answer.startswith("error ") else f"the worker stopped ({answer!r})"
            raise AssertionError(f"playNano failed on {pipeline!r}:\n{detail}")
        with np.load(dst) as f:
            out: dict[str, Any] = {"data": f["data"], "timestamps": f["timestamps"], "provenance": str(f["provenance"])}
            out["masks"] = {k[len("masks__"):]: f[k] for k in f.files if k.startswith("masks__")}
            out["processed"] = {k[len("processed__"):]: f[k] for k in f.files if k.startswith("processed__")}
    return out
