"""Two-way file compatibility with playNano, checked with playNano's own loaders and writers.

A comparison script, not a test: playNano is GPL and never an xafm dependency, so this runs
only in an environment where it is installed (``pip install playnano`` beside xafm).
Usage: ``python -m bench.playnano_compat``. Prints one line per check and exits non-zero if
any fails.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np


def main() -> int:
    try:
        from playnano.afm_stack import AFMImageStack
        from playnano.io import data_loaders, export_data
        from playnano.processing.pipeline import ProcessingPipeline
    except ImportError:
        print("playNano is not installed here; nothing checked")
        return 0
    import xafm

    failures = 0

    def check(what: str, ok: bool, detail: str = "") -> None:
        nonlocal failures
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what}{(': ' + detail) if detail else ''}")

    tmp = Path(tempfile.mkdtemp(prefix="xafm-playnano-"))
    rng = np.random.default_rng(0)
    data = rng.normal(size=(5, 24, 20)).astype(np.float32) + np.arange(20)
    da = xafm.stack(data, pixel_size_nm=1.5, times=np.arange(5) * 0.4, channel="height_trace")
    da = da.afm.remove_plane(keep_layer=True).afm.mask_threshold(0.5, name="step_2_mask_threshold")

    # xafm -> playNano
    for fmt, loader in (("h5", data_loaders.load_h5_bundle), ("npz", data_loaders.load_npz_bundle), ("tif", data_loaders.load_ome_tiff_stack)):
        path = da.afm.export(tmp / "from_xafm", "s", [fmt])[fmt]
        try:
            st = loader(path)
            ok = np.allclose(st.data, da.values.astype(np.float32)) and abs(st.pixel_size_nm - 1.5) < 1e-9
            ok &= np.allclose([m["timestamp"] for m in st.frame_metadata], da["time"].values)
            detail = f"layers {sorted(st.processed)}, masks {sorted(st.masks)}, provenance keys {sorted(st.provenance)}"
            if fmt != "tif":
                ok &= set(st.processed) == {"raw"} and set(st.masks) == {"step_2_mask_threshold"}
                want = da.afm.masks["step_2_mask_threshold"].values
                got = st.masks.get("step_2_mask_threshold")
                ok &= got is not None and got.dtype == bool and np.array_equal(got, want)  # boolean masks, same pixels
                detail += f" ({', '.join(f'{k}: {v.dtype}' for k, v in st.masks.items())})"
            # playNano can keep processing what xafm wrote
            pipe = ProcessingPipeline(st)
            pipe.add_filter("remove_plane")
            pipe.run()
            ok &= len(st.provenance["processing"]["steps"]) >= 1
            check(f"playNano loads xafm's {fmt} and processes it", bool(ok), detail)
        except Exception as exc:  # report, don't stop
            check(f"playNano loads xafm's {fmt}", False, f"{type(exc).__name__}: {exc}")

    # playNano -> xafm
    frames = [{"timestamp": 0.5 * i, "frame_pixel_size_nm": 2.0, "line_rate": 50.0} for i in range(5)]
    st = AFMImageStack(data.astype(np.float64), pixel_size_nm=2.0, channel="height_trace", file_path=tmp / "pn", frame_metadata=frames)
    pipe = ProcessingPipeline(st)
    pipe.add_filter("remove_plane")
    pipe.add_mask("mask_threshold", threshold=0.5)
    pipe.run()
    writers = (("h5", export_data.save_h5_bundle, ".h5"), ("npz", export_data.save_npz_bundle, ".npz"), ("tif", export_data.save_ome_tiff_stack, ".ome.tif"))
    for fmt, writer, suffix in writers:
        path = tmp / "from_playnano" / f"s{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            writer(path, st)
            back = xafm.open(path)
            ok = np.allclose(back.values, st.data.astype(np.float32), atol=1e-5) and abs(back.afm.pixel_size_nm - 2.0) < 1e-6
            ok &= np.allclose(back["time"].values, [0.5 * i for i in range(5)])
            detail = f"layers {sorted(back.afm.layers)}, masks {sorted(back.afm.masks)}, steps {[r.get('name') for r in back.afm.provenance if r['type'] in ('step', 'mask')]}"
            if fmt != "tif":
                ok &= set(back.afm.layers) == set(st.processed) and set(back.afm.masks) == set(st.masks)
                ok &= all(back.afm.masks[k].dtype == bool and np.array_equal(back.afm.masks[k].values, v) for k, v in st.masks.items())
            check(f"xafm reads playNano's {fmt}", bool(ok), detail)
        except Exception as exc:
            check(f"xafm reads playNano's {fmt}", False, f"{type(exc).__name__}: {exc}")
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
