"""Short first opens (issue 16): ``import xafm`` against ``import xarray``, the first open of
an ``.asd``, ``.h5``, OME-TIFF and OME-Zarr against the raw library's import and open, an
``.nd2`` open against the ``nd2`` package, and OME-TIFF lazy opens against the number of
pages; this tree against another (by default ``main``, exported with ``git archive``), in
interleaved rounds.

Every measurement runs in a fresh process with ``PYTHONPATH`` set to the tree, the trees
alternating round by round (a 2-core noisy machine: compare ratios within a round, report
medians over rounds).

- imports: ``import xarray`` alone, then ``import xarray; import xafm`` (the time of the
  second import only), and which heavy modules ``import xafm`` left in ``sys.modules``;
- first opens: in a fresh process, ``import xafm`` then the first ``xafm.open(path)``
  (eager) or ``xafm.open(path, lazy=True)``, timed apart and together, with the heavy
  modules the open imported; against, in a fresh process, the raw library's import and
  open (``h5py.File(path)["data"]``, ``tifffile.TiffFile(path).series[0]``,
  ``zarr.open_group(path)["0"]``) and its import, open and read of the values. Files: the
  real ``asd_sample_0.asd`` and the ``.h5``, OME-TIFF and OME-Zarr xafm writes of it.
  Children run with Python's bytecode cache (``PYTHONPYCACHEPREFIX`` in a temporary
  folder, filled by a first run of each tree), as an installed package runs: with
  ``PYTHONDONTWRITEBYTECODE`` set, every xafm module would be compiled from source on
  every import (0.6 s of a first open here), which no installed xafm does;
- nd2: the real ``cluster.nd2`` (``XAFM_SHARED_DATA`` or ``../shared/data``):
  ``nd2.ND2File(path).to_xarray()`` (eager), ``nd2.imread``, ``xafm.open`` eager and
  ``xafm.open(chunks={})``, interleaved within the process, median of the repetitions;
- OME-TIFF: ``xafm.open(chunks={})`` of xafm-written files (32 x 32 float32 frames with
  per-frame times) of 100, 1000, 4000 and 16000 pages, and of tifffile-written ones
  (``ome=True``, other tools' path), best of three; beside them, in a process of their
  own each round, tifffile on the same frames: its OME series of the tifffile-written
  file (``TiffFile(p).series[0]``), its uniform fast path (the series of a shaped file,
  tifffile's own format without OME-XML) and one page (``imread(p, key=0)``).

Usage: ``python -m bench.open_speed [--rounds 5] [--against main] [--skip-ometiff] [--only-ometiff] [--only-first-open]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.npz_lazy import export_tree

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("XAFM_SHARED_DATA", ROOT.parent / "shared" / "data"))
ND2 = SHARED / "other" / "cluster.nd2"
ASD = SHARED / "afm" / "asd_sample_0.asd"
PAGES = (100, 1000, 4000, 16000)
HEAVY = ("matplotlib", "dask", "dask.array", "scipy", "h5py", "tifffile", "zarr", "nd2")
FIRST_HEAVY = (*HEAVY, "pint", "ome_types", "pydantic", "ome_zarr_models", "PIL", "imageio")

IMPORT_XARRAY = "import time; t = time.perf_counter(); import xarray; print(time.perf_counter() - t)"
IMPORT_XAFM = (
    "import sys, time, json; import xarray; t = time.perf_counter(); import xafm; dt = time.perf_counter() - t\n"
    f"print(json.dumps([dt, [m for m in {HEAVY!r} if m in sys.modules]]))"
)
FIRST_XAFM = r"""
import json, sys, time, warnings
t0 = time.perf_counter()
import xafm
t1 = time.perf_counter()
warnings.simplefilter("ignore")
before = set(sys.modules)
xafm.open(sys.argv[1], lazy=sys.argv[2] == "lazy")
t2 = time.perf_counter()
heavy = sorted({m for m in set(sys.modules) - before if m in HEAVY})
print(json.dumps({"open": t2 - t1, "total": t2 - t0, "heavy": heavy}))
""".replace("HEAVY", repr(FIRST_HEAVY))
FIRST_RAW = {
    "h5": ("import h5py", "f = h5py.File(p, 'r'); a = f['data']", "a[...]"),
    "ome-tiff": ("import tifffile", "f = tifffile.TiffFile(p); a = f.series[0]", "a.asarray()"),
    "ome-zarr": ("import zarr", "a = zarr.open_group(p, mode='r')['0']", "a[:]"),
}
FIRST_RAW_CHILD = r"""
import json, sys, time
p, read = sys.argv[1], sys.argv[2] == "read"
t0 = time.perf_counter()
exec(sys.argv[3])
exec(sys.argv[4])
if read:
    exec(sys.argv[5])
print(json.dumps({"total": time.perf_counter() - t0}))
"""
ND2_CHILD = r"""
import json, sys, time, warnings
import numpy as np, nd2, xafm
warnings.simplefilter("ignore")
p = sys.argv[1]
def to_xarray():
    with nd2.ND2File(p) as f:
        f.to_xarray(delayed=False)
fns = {"nd2 to_xarray": to_xarray, "nd2 imread": lambda: nd2.imread(p),
       "xafm eager": lambda: xafm.open(p), "xafm lazy": lambda: xafm.open(p, chunks={})}
for f in fns.values():
    f()
got = {k: [] for k in fns}
for _ in range(int(sys.argv[2])):
    for k, f in fns.items():
        t = time.perf_counter(); f(); got[k].append(time.perf_counter() - t)
print(json.dumps({k: float(np.median(v)) for k, v in got.items()}))
"""
OME_CHILD = r"""
import json, sys, time, warnings
import xafm
warnings.simplefilter("ignore")
out = {}
for p in sys.argv[1:]:
    xafm.open(p, chunks={})  # warm the page cache and the imports
    best = []
    for _ in range(3):
        t = time.perf_counter(); xafm.open(p, chunks={}); best.append(time.perf_counter() - t)
    out[p] = min(best)
print(json.dumps(out))
"""


TIFFFILE_CHILD = r"""
import json, sys, time
import tifffile
def series(p):
    with tifffile.TiffFile(p) as tf:
        tf.series[0].shape
out = {}
for p in sys.argv[1:]:
    for label, f in (("series", series), ("key0", lambda p: tifffile.imread(p, key=0))):
        f(p)
        best = []
        for _ in range(3):
            t = time.perf_counter(); f(p); best.append(time.perf_counter() - t)
        out[label + " " + p] = min(best)
print(json.dumps(out))
"""
#: bytecode cache of the children (set in main): as an installed package, not compiled per run
PYCACHE: dict[str, str] = {}


def run(tree: Path, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(tree), **PYCACHE)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    res = subprocess.run([sys.executable, *args], env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True, check=True)
    return res.stdout.strip().splitlines()[-1]


def make_ome_files(folder: Path) -> dict[str, list[Path]]:
    import tifffile

    import xafm

    rng = np.random.default_rng(0)
    files: dict[str, list[Path]] = {"xafm": [], "tifffile": [], "shaped": []}
    for n in PAGES:
        a = rng.normal(size=(n, 32, 32)).astype(np.float32)
        own, other, shaped = folder / f"own_{n}.ome.tif", folder / f"tf_{n}.ome.tif", folder / f"shaped_{n}.tif"
        xafm.stack(a, pixel_size_nm=1.0, times=np.arange(n) * 0.1).afm.to_ome_tiff(own)
        tifffile.imwrite(other, a, ome=True, metadata={"axes": "TYX", "PhysicalSizeX": 0.001, "PhysicalSizeY": 0.001})
        tifffile.imwrite(shaped, a)  # tifffile's own shaped format: its uniform series
        files["xafm"].append(own)
        files["tifffile"].append(other)
        files["shaped"].append(shaped)
    return files


def make_first_files(folder: Path) -> dict[str, Path]:
    """The real ``.asd`` and xafm's ``.h5``, OME-TIFF and OME-Zarr of it."""
    import xafm

    da = xafm.open(ASD)
    out = {"asd": ASD, "h5": folder / "first.h5", "ome-tiff": folder / "first.ome.tif", "ome-zarr": folder / "first.ome.zarr"}
    da.afm.to_h5(out["h5"])
    da.afm.to_ome_tiff(out["ome-tiff"])
    da.afm.to_ome_zarr(out["ome-zarr"])
    return out


def first_opens(trees: dict[str, Path], files: dict[str, Path], order: list[str]) -> dict[str, dict]:
    """One round: every file's first open in fresh processes, each tree in ``order``, the
    raw library between them."""
    got: dict[str, dict] = {}
    for kind, path in files.items():
        for label in order:
            for mode in ("eager", "lazy"):
                got[f"{kind} {label} {mode}"] = json.loads(run(trees[label], "-c", FIRST_XAFM, str(path), mode))
        if kind in FIRST_RAW:
            imp, opn, read = FIRST_RAW[kind]
            for how in ("open", "read"):
                got[f"{kind} raw {how}"] = json.loads(run(trees[order[0]], "-c", FIRST_RAW_CHILD, str(path), how, imp, opn, read))
    return got


def report_first_opens(rows: list[dict[str, dict]], trees: dict[str, Path], files: dict[str, Path]) -> None:
    print(f"\n## first open in a fresh process (median of {len(rows)} rounds, ms; x: ratio to the raw library's import + open in the same round)")
    print(f"{'file':<9} {'code':<10} {'mode':<6} {'open':>7} {'import+open':>12} {'x raw open':>10} {'x raw read':>10}  heavy modules the open imported")
    for kind in files:
        for label in trees:
            for mode in ("eager", "lazy"):
                key = f"{kind} {label} {mode}"
                opn = median([r[key]["open"] for r in rows]) * 1e3
                tot = median([r[key]["total"] for r in rows]) * 1e3
                ratios = ["", ""]
                if kind in FIRST_RAW:
                    ratios = [f"x{median([r[key]['total'] / r[f'{kind} raw {how}']['total'] for r in rows]):.1f}" for how in ("open", "read")]
                print(f"{kind:<9} {label:<10} {mode:<6} {opn:7.0f} {tot:12.0f} {ratios[0]:>10} {ratios[1]:>10}  {rows[-1][key]['heavy'] or 'none'}")
        if kind in FIRST_RAW:
            raw = "  ".join(f"{how} {1e3 * median([r[f'{kind} raw {how}']['total'] for r in rows]):.0f}" for how in ("open", "read"))
            print(f"{kind:<9} {'raw':<10} {'':<6} import+{raw}")


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=15, help="nd2 repetitions per round")
    ap.add_argument("--against", default="main", help="git ref of the code to compare with")
    ap.add_argument("--skip-ometiff", action="store_true")
    ap.add_argument("--only-ometiff", action="store_true", help="neither the imports nor the nd2 file")
    ap.add_argument("--only-first-open", action="store_true", help="measure the first opens only")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "other").mkdir()
        PYCACHE["PYTHONPYCACHEPREFIX"] = str(tmp_path / "pycache")
        trees = {args.against: export_tree(args.against, tmp_path / "other"), "this tree": ROOT}
        first_files = make_first_files(tmp_path) if ASD.exists() else {}
        for tree in trees.values():  # fill the bytecode cache
            run(tree, "-W", "ignore", "-c", f"import xafm, h5py, tifffile, zarr; xafm.open({str(ASD)!r}); print(0)")
        first: list[dict[str, dict]] = []
        if args.only_first_open:
            for r in range(args.rounds):
                first.append(first_opens(trees, first_files, list(trees) if r % 2 == 0 else list(reversed(trees))))
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
            report_first_opens(first, trees, first_files)
            return
        files = {} if args.skip_ometiff else make_ome_files(tmp_path)
        imp: dict[str, list[float]] = {"xarray": [], **{t: [] for t in trees}}
        heavy: dict[str, list[str]] = {}
        nd2: dict[str, list[dict[str, float]]] = {t: [] for t in trees}
        ome: dict[str, list[dict[str, float]]] = {t: [] for t in trees}
        tf_ref: list[dict[str, float]] = []
        for r in range(args.rounds):
            order = list(trees) if r % 2 == 0 else list(reversed(trees))
            for label in order if not args.only_ometiff else []:
                imp["xarray"].append(float(run(trees[label], "-c", IMPORT_XARRAY)))
                dt, mods = json.loads(run(trees[label], "-c", IMPORT_XAFM))
                imp[label].append(dt)
                heavy[label] = mods
            if first_files and not args.only_ometiff:
                first.append(first_opens(trees, first_files, order))
            for label in order:
                if ND2.exists() and not args.only_ometiff:
                    nd2[label].append(json.loads(run(trees[label], "-c", ND2_CHILD, str(ND2), str(args.reps))))
            for label in order:
                if files:
                    ome[label].append(json.loads(run(trees[label], "-c", OME_CHILD, *map(str, files["xafm"] + files["tifffile"]))))
            if files:
                tf_ref.append(json.loads(run(ROOT, "-c", TIFFFILE_CHILD, *map(str, files["tifffile"] + files["shaped"]))))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    if imp["xarray"]:
        print(f"\n## import (median of {args.rounds} rounds, ms)")
        print(f"import xarray alone: {1e3 * median(imp['xarray']):.0f}")
    for label in trees if imp["xarray"] else []:
        print(f"import xafm after xarray, {label}: {1e3 * median(imp[label]):.0f}; heavy modules left: {heavy[label] or 'none'}")
    if first:
        report_first_opens(first, trees, first_files)
    if any(nd2.values()):
        print("\n## cluster.nd2 (median over rounds of the per-round medians, ms; ratio to nd2 to_xarray in the same round)")
        for label in trees:
            rows = nd2[label]
            for key in rows[0]:
                ms = median([x[key] for x in rows]) * 1e3
                ratio = median([x[key] / x["nd2 to_xarray"] for x in rows])
                print(f"{label:>10} {key:<14} {ms:7.2f}  x{ratio:.2f}")
    if files:
        print("\n## OME-TIFF lazy open (median over rounds of best of 3, ms)")
        kinds = ("xafm", "tifffile")
        refs = (("tifffile OME series", "series", "tifffile"), ("tifffile shaped series", "series", "shaped"), ("tifffile key=0", "key0", "tifffile"))
        print("pages      " + "  ".join(f"{label + ' ' + kind:>22}" for kind in kinds for label in trees) + "  " + "  ".join(f"{r[0]:>22}" for r in refs))
        for i, n in enumerate(PAGES):
            cells = []
            for kind in kinds:
                for label in trees:
                    cells.append(f"{1e3 * median([x[str(files[kind][i])] for x in ome[label]]):22.1f}")
            for _, what, kind in refs:
                cells.append(f"{1e3 * median([x[what + ' ' + str(files[kind][i])] for x in tf_ref]):22.1f}")
            print(f"{n:<10} " + "  ".join(cells))


if __name__ == "__main__":
    main()
