"""What ``import xafm`` and a first open import (subprocesses with fresh interpreters): no
matplotlib, dask, scipy, pint, validation or format library until something needs it
(an open imports its own format's library only, and of xafm's format modules only its
own: the format table lists them without importing them), and xafm's colormaps still
registered with matplotlib whenever matplotlib is imported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import shared_file

HEAVY = (
    "matplotlib", "dask", "dask.array", "scipy", "pint", "h5py", "tifffile", "zarr", "nd2", "ome_types", "pydantic",
    "ome_zarr_models", "PIL", "imageio",
)  # fmt: skip


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


#: xafm's modules of formats and animated exports (``xafm.formats.asd``, ``xafm.animation.gif``, ...)
FORMAT_PACKAGES = ("xafm.formats.", "xafm.animation.")


def _opened(code: str) -> tuple[list[str], list[str]]:
    """The heavy modules and the format modules that ``code`` leaves imported, in a fresh
    interpreter: format modules are those of :data:`FORMAT_PACKAGES`, without the private
    helpers several formats share (``xafm.formats._hdf5``) or the submodules of a format
    package (``xafm.formats.omezarr.reader``)."""
    listed = f"[[m for m in {HEAVY!r} if m in sys.modules], sorted(m for m in sys.modules if m.startswith({FORMAT_PACKAGES!r}))]"
    heavy, found = json.loads(_run(f"import json, sys\n{code}\nprint(json.dumps({listed}))"))
    own = [m for m in found if not m.rsplit(".", 1)[1].startswith("_")]
    return heavy, [m for m in own if not any(m.startswith(f"{parent}.") for parent in own)]


def test_import_xafm_and_its_format_table_import_no_heavy_library():
    assert _imported("import xafm", "from xafm import registry; registry.table()") == [[], []]


def test_the_format_table_imports_no_format_module():
    code = "import xafm\nfrom xafm import registry\nt = registry.table(); registry.readable(); registry.writable(); xafm.formats_table()"
    assert _opened(code) == ([], [])


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A small stack in xafm's h5, OME-TIFF and OME-Zarr (written here, opened in a fresh
    interpreter)."""
    import numpy as np

    import xafm

    folder = tmp_path_factory.mktemp("imports")
    da = xafm.stack(np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8), pixel_size_nm=1.0, times=[0.0, 0.5])
    return {
        "h5py": da.afm.to_h5(folder / "s.h5"),
        "tifffile": da.afm.to_ome_tiff(folder / "s.ome.tif"),
        "zarr": da.afm.to_ome_zarr(folder / "s.ome.zarr"),
    }


@pytest.mark.parametrize("lazy", [False, True])
def test_first_open_of_an_asd_imports_no_heavy_library_and_only_its_format(lazy):
    # xarray imports dask (and through it scipy) at the first Variable made of a numpy
    # array, and pint at the first dimension coordinate, when they are installed
    # (xarray.namedarray.pycompat): xafm's readers build theirs without those checks
    asd = shared_file("afm", "asd_sample_0.asd")
    assert _opened(f"import xafm; xafm.open({str(asd)!r}, lazy={lazy})") == ([], ["xafm.formats.asd"])


@pytest.mark.parametrize(
    "library, module", [("h5py", "xafm.formats.h5bundle"), ("tifffile", "xafm.formats.ometiff"), ("zarr", "xafm.formats.omezarr")]
)
@pytest.mark.parametrize("lazy", [False, True])
def test_first_open_imports_only_its_format_library_and_module(written, library, module, lazy):
    assert _opened(f"import xafm; xafm.open({str(written[library])!r}, lazy={lazy})") == ([library], [module])


def test_a_name_no_format_claims_is_still_found_by_its_content(tmp_path):
    """With nothing imported yet, a name no format claims asks every readable format's
    content check (each imported then), in table order, as before."""
    import shutil

    import xafm

    asd = shared_file("afm", "asd_sample_0.asd")
    renamed = tmp_path / "video"
    shutil.copyfile(asd, renamed)
    code = f"import xafm\nfrom xafm import registry\nprint(registry.find({str(renamed)!r}).name, xafm.open({str(renamed)!r}, lazy=True).shape)"
    assert _run(code) == f"asd {xafm.open(asd, lazy=True).shape}"


def test_a_second_format_adds_only_its_own_library():
    asd = shared_file("afm", "asd_sample_0.asd")
    nd2 = shared_file("other", "cluster.nd2")
    after_asd, after_nd2 = _imported(f"import xafm; xafm.open({str(asd)!r})", f"xafm.open({str(nd2)!r})")
    assert (after_asd, after_nd2) == ([], ["nd2"])


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


def test_lazy_packages_still_give_their_names_and_submodules():
    """``xafm.render`` and ``xafm.animation`` import their modules on first use: a name,
    or a submodule, asked of the package alone is there; an unknown one is an
    AttributeError."""
    code = (
        "import json, xafm.animation as a, xafm.render as r\n"
        "got = [a.to_gif.__module__, a.video.__name__, r.RenderOptions.__module__, r.frames.__name__]\n"
        "try:\n    a.no_such_name\nexcept AttributeError:\n    got.append('AttributeError')\n"
        "print(json.dumps(got))"
    )
    assert json.loads(_run(code)) == [
        "xafm.animation.gif", "xafm.animation.video", "xafm.render.options", "xafm.render.frames", "AttributeError",
    ]  # fmt: skip
