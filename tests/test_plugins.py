"""Third-party formats join through the ``xafm.formats`` entry point group, loaded by their
module path, exactly as an installed package's would be: ``tests/plugin`` holds a tiny
format module and the ``.dist-info`` folder that declares it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xafm
from xafm import registry

PLUGIN_SITE = Path(__file__).parent / "plugin"


@pytest.fixture
def with_plugin(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN_SITE))
    registry.refresh()
    yield
    monkeypatch.undo()
    registry.refresh()


@pytest.fixture
def with_broken_plugin(tmp_path, monkeypatch):
    """A plugin whose declaration breaks the contract (its reader takes **kwargs)."""
    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[xafm.formats]\nbroken = broken_plugin\nmissing = no_such_module_anywhere\n")
    (tmp_path / "broken_plugin.py").write_text(
        "from xafm.core.contract import Format\n"
        "def read(path, **kwargs):\n    return None\n"
        "FORMAT = Format(name='broken', description='breaks the contract', suffixes=('.brk',), read=read,\n"
        "                identify=lambda probe: True, channels=lambda path: ['x'])\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.refresh()
    yield
    monkeypatch.undo()
    registry.refresh()


def test_plugin_format_joins_the_table_through_its_entry_point(with_plugin, tmp_path):
    fmt = registry.get("example")
    assert fmt.module == "xafm_example_format" and fmt.can_read and fmt.can_write
    da = xafm.stack(np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5), pixel_size_nm=2.5)
    path = da.afm.export(tmp_path, "s", ["example"])["example"]
    assert path.name == "s.xex"
    back = xafm.open(path)
    np.testing.assert_array_equal(back.values, da.values)
    assert back.afm.pixel_size_nm == 2.5 and back.afm.provenance[-1]["reader"] == "xafm_example_format"
    lazy = xafm.open(path, chunks={})
    assert lazy.chunks is not None and lazy.encoding["preferred_chunks"]["time"] == 3
    assert xafm.channels(path) == ["height"]
    # the xarray engine, by content and by name
    assert xr.backends.list_engines()["xafm"].guess_can_open(str(path))
    np.testing.assert_array_equal(xr.open_dataarray(path, engine="xafm").values, da.values)
    with pytest.raises(xafm.UnknownOptionError, match="its options are: channel"):
        xafm.open(path, level=1)
    assert "example" in [row["name"] for row in xafm.formats_table()]


def test_without_the_plugin_its_files_are_unknown(tmp_path):
    registry.refresh()
    assert "example" not in registry.table()
    path = tmp_path / "s.xex"
    path.write_bytes(b"XAFMEX01" + bytes(20))
    with pytest.raises(xafm.UnknownFormatError):
        xafm.open(path)


def test_a_broken_plugin_is_named_and_skipped(with_broken_plugin):
    with pytest.warns(xafm.XafmWarning) as caught:
        table = registry.table()
    messages = " ".join(str(w.message) for w in caught)
    assert "broken" not in table and "h5" in table
    assert "does not meet xafm's format contract" in messages and "**kwargs" in messages
    assert "no_such_module_anywhere" in messages
