"""Run a playNano 0.5 pipeline on a stack, in playNano's own environment (a script, never
imported by xafm or its tests: playNano is GPL, so it stays in a separate venv).

    PLAYNANO_PYTHON tests/playnano_side.py IN.npz OUT.npz "remove_plane; gaussian_filter:sigma=1"
    PLAYNANO_PYTHON tests/playnano_side.py --serve      # jobs as JSON lines on stdin

IN.npz holds ``stack`` (frames, y, x; float64), ``pixel_size_nm`` (a scalar) and
``timestamps`` (seconds). The pipeline string is parsed by playNano's own CLI parser and
run by its ``ProcessingPipeline``, as ``playnano process --processing`` does. OUT.npz gets
``data`` (the processed stack), ``timestamps`` (after stack edits), ``masks__<key>`` for
every mask playNano made, ``processed__<key>`` for every kept layer, and ``provenance``
(playNano's processing record as JSON text, NaN-free).

``tests/playnano_ref.py`` runs it (not named playnano.py: this script's folder is first on sys.path); nothing here is xafm's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str]) -> int:
    """One job from the arguments, or (``--serve``) one job per line of stdin, a JSON list
    ``[IN, OUT, PIPELINE]``, answered by a line ``ok`` or ``error <JSON message>``: playNano's
    import costs seconds, so the tests start one worker for the session."""
    if len(argv) > 1 and argv[1] == "--serve":
        for line in sys.stdin:
            try:
                run(*json.loads(line))
                answer = "ok"
            except Exception as exc:  # the worker outlives a failing job, which the tests report
                import traceback

                answer = "error " + json.dumps(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-3000:]}")
            sys.stdout.write(answer + "\n")
            sys.stdout.flush()
        return 0
    run(argv[1], argv[2], argv[3])
    return 0


def run(src: str, dst: str, pipeline_text: str) -> None:
    """Run ``pipeline_text`` on the stack in ``src`` with playNano, writing ``dst``."""
    import logging

    logging.disable(logging.WARNING)
    from playnano.afm_stack import AFMImageStack
    from playnano.cli.utils import parse_processing_string
    from playnano.processing.pipeline import ProcessingPipeline

    with np.load(src) as f:
        stack = np.ascontiguousarray(f["stack"], dtype=np.float64)
        px = float(f["pixel_size_nm"])
        times = [float(t) for t in f["timestamps"]]
    meta = [{"timestamp": t} for t in times]
    afm = AFMImageStack(stack.copy(), pixel_size_nm=px, channel="height", file_path=Path(src), frame_metadata=meta)
    pipeline = ProcessingPipeline(afm)
    for name, kwargs in parse_processing_string(pipeline_text):
        if name == "clear":
            pipeline.clear_mask()
        else:
            pipeline.add_filter(name, **kwargs)
    pipeline.run()
    out: dict[str, np.ndarray] = {"data": np.asarray(afm.data)}
    out["timestamps"] = np.asarray([float(m.get("timestamp", np.nan)) for m in afm.frame_metadata], dtype=np.float64)
    for key, arr in (afm.masks or {}).items():
        out[f"masks__{key}"] = np.asarray(arr)
    for key, arr in (afm.processed or {}).items():
        out[f"processed__{key}"] = np.asarray(arr)
    record = afm.provenance.get("processing", {}) if isinstance(afm.provenance, dict) else {}
    out["provenance"] = np.asarray(json.dumps(record, default=repr))
    np.savez(dst, **out)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
