"""What ``import xafm`` and a first eager open import (subprocesses with fresh interpreters):
no matplotlib, dask, scipy or format library until something needs it, and xafm's
colormaps still registered with matplotlib whenever matplotlib is imported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import shared_file

HEAVY = ("matplotlib", "dask", "dask.array", "scipy", "h5py", "tifffile", "zarr", "nd2", "PIL", "imageio")


def _run(code: str) -> str:
    res = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[-1]


def _imported(*steps: str) -> list[list[str]]:
    """The heavy modules imported after each step, all run in one fresh interpreter."""
    lines = ["import json, sys", "seen = []"]
    for step in steps:
        lines += [step, f"seen.append([m for m in {HEAVY!r} if m in sys.modules])"]
    return json.loads(_run("\n".join([*lines, "print(json.dumps(seen))"])))


def test_import_xafm_and_its_format_table_import_no_heavy_library():
    assert _imported("import xafm", "from xafm import registry; registry.table()") == [[], []]


def test_first_eager_open_imports_only_its_format_library():
    asd = shared_file("afm", "asd_sample_0.asd")
    nd2 = shared_file("other", "cluster.nd2")
    after_asd, after_nd2 = _imported(f"import xafm; xafm.open({str(asd)!r})", f"xafm.open({str(nd2)!r})")
    # xarray itself imports dask.array (and through it scipy) at its first Variable when dask
    # is installed; xafm adds the file's own format library only, and no matplotlib
    assert set(after_asd) <= {"dask", "dask.array", "scipy"}
    assert set(after_nd2) - set(after_asd) == {"nd2"}


@pytest.mark.parametrize(
    "code",
    [
        "import xafm\nimport matplotlib",  # matplotlib after xafm: the import hook registers
        "import matplotlib\nimport xafm",  # before: registered at import xafm
        # a lookup of whether matplotlib is installed (as xarray does) must not spend the hook
        "import xafm, importlib.util\nassert importlib.util.find_spec('matplotlib')\nimport matplotlib.pyplot",
    ],
)
def test_colormaps_registered_whenever_matplotlib_is_imported(code):
    names = ("xafm_afm", "xafm_afm_r", "xafm_afm_uniform", "xafm_afm_uniform_r")
    assert _run(f"{code}\nimport matplotlib\nprint(all(n in matplotlib.colormaps for n in {names!r}))") == "True"


def test_xarray_plot_takes_the_colormap_by_name():
    code = (
        "import xafm, numpy as np, xarray as xr, matplotlib\nmatplotlib.use('Agg')\n"
        "m = xr.DataArray(np.arange(9.0).reshape(3, 3)).plot(cmap='xafm_afm')\nprint(m.get_cmap().name)"
    )
    assert _run(code) == "xafm_afm"
