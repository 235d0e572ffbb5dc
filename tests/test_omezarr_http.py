"""OME-Zarr served over HTTP, read where users open it: ome-zarr-py's reader (what
napari-ome-zarr loads) and zarr itself (``zarr.open_group("http://...")``).

Each test serves a folder from Python's ``http.server`` on 127.0.0.1 (a free port, in a
thread the fixture starts and stops). The server decodes ``%XX`` in request paths, as
every static web server and object store gateway does, and the clients do not escape a
``%`` again: that is why node keys must not rely on percent-encoding.
"""

from __future__ import annotations

import functools
import http.server
import importlib
import os
import shutil
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import zarr

import xafm
from tests.test_omezarr import validate_store
from xafm.formats import omezarr


def _needed(module: str, why: str):
    """The module, else skip this file (locally) or fail (CI is set: the test extra has it)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module} is absent: {why} (pip install -e '.[test]')", allow_module_level=True)


ome_zarr_reader = _needed("ome_zarr.reader", "ome-zarr-py reads the stores as napari-ome-zarr does")
ome_zarr_io = _needed("ome_zarr.io", "ome-zarr-py reads the stores as napari-ome-zarr does")
_needed("aiohttp", "fsspec's HTTP file system (zarr over http://) needs it")

VERSIONS = ["0.5", "0.4"]
#: Names that are awkward as keys: spaces, &, µ, /, %, .., a leading __, case, and two
#: names (``a b`` and ``a_b``) that one simple sanitiser would map to one key.
NAMES = ["grains & µ", "a b", "a_b", "hi/1", "50%", "%41", "..", ".", "__init", "Grains", "grains", "con", "x" * 90]
LEGACY = Path(__file__).parent / "data" / "omezarr_percent_keys.zip"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep the test output clean (404s are expected: probes)
        pass


@pytest.fixture
def served(tmp_path):
    """(folder, base URL): ``folder`` served read-only over HTTP on 127.0.0.1 for the test."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def awkward_stack(rng, shape=(3, 20, 18)):
    data = (rng.normal(size=shape) * 5).astype(np.float32)
    masks = {name: data > (i - 6) * 0.4 for i, name in enumerate(NAMES)}
    layers = {name: data * (i + 2) for i, name in enumerate(NAMES[:5])}
    return data, xafm.stack(data, pixel_size_nm=(2.0, 1.5), masks=masks, layers=layers)


def ome_zarr_nodes(url: str) -> list:
    reader = ome_zarr_reader.Reader(ome_zarr_io.parse_url(url))
    return list(reader())


def xafm_meta(path: Path) -> dict:
    return zarr.open_group(str(path), mode="r").attrs["xafm"]


@pytest.mark.parametrize("version", VERSIONS)
def test_ome_zarr_py_over_http_finds_every_label_and_level(version, served, rng):
    folder, base = served
    data, da = awkward_stack(rng)
    path = omezarr.write(da, folder / "s.ome.zarr", levels=3, version=version)
    validate_store(path)
    meta = xafm_meta(path)
    keys = {name: p.split("/", 1)[1] for name, p in meta["masks"].items()}
    assert len(set(keys.values())) == len(NAMES)

    nodes = ome_zarr_nodes(f"{base}/s.ome.zarr")
    image = nodes[0]
    assert [s.__class__.__name__ for s in image.specs][:1] == ["Multiscales"]
    assert [tuple(a.shape) for a in image.data] == [(3, 20, 18), (3, 10, 9), (3, 5, 4)]
    np.testing.assert_array_equal(np.asarray(image.data[0]), data)  # over HTTP
    np.testing.assert_allclose(np.asarray(image.data[1]), data.reshape(3, 10, 2, 9, 2).mean(axis=(2, 4)), rtol=1e-5)
    labels = {n.zarr.basename(): n for n in nodes if any(s.__class__.__name__ == "Label" for s in n.specs)}
    assert set(labels) == set(keys.values())  # every mask found, under its key
    for name, key in keys.items():
        node = labels[key]
        assert node.metadata["name"] == name  # what napari-ome-zarr names the layer: the user's name
        assert node.metadata["color"] == {1: [1.0, 0.0, 0.0, 128 / 255]}
        assert [tuple(a.shape) for a in node.data] == [(3, 20, 18), (3, 10, 9), (3, 5, 4)]
        np.testing.assert_array_equal(np.asarray(node.data[0]), da.afm.masks[name].values.astype(np.uint8))


@pytest.mark.parametrize("version", VERSIONS)
def test_zarr_over_http_reads_values_of_every_node(version, served, rng):
    folder, base = served
    data, da = awkward_stack(rng)
    path = omezarr.write(da, folder / "s.ome.zarr", levels=2, version=version)
    meta = xafm_meta(path)
    g = zarr.open_group(f"{base}/s.ome.zarr", mode="r")
    assert type(g.store).__name__ == "FsspecStore"
    np.testing.assert_array_equal(g["0"][:], data)
    ome = g.attrs["ome"] if version == "0.5" else dict(g.attrs)
    assert [d["path"] for d in ome["multiscales"][0]["datasets"]] == ["0", "1"]
    labels = g["labels"].attrs["ome"]["labels"] if version == "0.5" else g["labels"].attrs["labels"]
    assert sorted(labels) == sorted(p.split("/", 1)[1] for p in meta["masks"].values())
    for name, p in meta["masks"].items():
        np.testing.assert_array_equal(g[p]["0"][:], da.afm.masks[name].values.astype(np.uint8))
        np.testing.assert_array_equal(g[p]["1"][:], da.afm.masks[name].values.reshape(3, 10, 2, 9, 2).max(axis=(2, 4)))
    for name, p in meta["layers"].items():
        np.testing.assert_array_equal(g[p]["0"][:], da.afm.layers[name].values)
    # and xafm gives the user's names back from the same store
    back = xafm.open(path)
    assert set(back.afm.masks) == set(NAMES) and set(back.afm.layers) == set(NAMES[:5])
    for name in NAMES:
        np.testing.assert_array_equal(back.afm.masks[name].values, da.afm.masks[name].values)


def test_omero_window_reaches_ome_zarr_py(served, rng):
    """napari-ome-zarr takes its contrast limits from what ome-zarr-py reads from omero."""
    from xafm.render.colorscale import zscale

    folder, base = served
    _, da = awkward_stack(rng)
    omezarr.write(da, folder / "s.ome.zarr")
    image = ome_zarr_nodes(f"{base}/s.ome.zarr")[0]
    (limits,) = image.metadata["contrast_limits"]
    assert limits == pytest.approx(list(zscale(da)), rel=1e-12)
    assert image.metadata["channel_names"] == ["height"] and image.metadata["visible"] == [True]


@pytest.mark.parametrize("version", VERSIONS)
def test_previous_percent_encoded_keys_still_read_and_append(version, served, tmp_path):
    """Stores the previous version wrote, with percent-encoded keys: tests/data holds them,
    made with xafm at commit a6fb71b by ``omezarr.write(da, f"v{v}.ome.zarr", levels=2,
    version=v)`` for the ``da`` of ``data`` below, ``pixel_size_nm=(2.0, 1.5)``, ``times``
    0, 0.1, 0.25, the masks in ``want`` and the layer ``"ü x"`` (``data * 2``)."""
    with zipfile.ZipFile(LEGACY) as z:
        z.extractall(tmp_path / "old")
    path = tmp_path / "old" / f"v{version}.ome.zarr"
    assert (path / "labels" / "grains%20%26%20%C2%B5").is_dir()
    data = np.arange(3 * 8 * 10, dtype=np.float32).reshape(3, 8, 10) * 0.5 - 20  # what was written
    back = xafm.open(path)
    np.testing.assert_array_equal(back.values, data)
    assert back.afm.pixel_size_nm == 1.5 and list(back.time.values) == [0.0, 0.1, 0.25]
    want = {"grains & µ": data > 0, "__init": data < -10, "a b": data > 30}
    assert set(back.afm.masks) == set(want)
    for name, m in want.items():
        np.testing.assert_array_equal(back.afm.masks[name].values, m)
    np.testing.assert_array_equal(back.afm.layers["ü x"].values, data * 2)

    # appending keeps the old keys (no second node per mask) and the store valid
    more = data[:1] + 100
    new = xafm.stack(more, pixel_size_nm=(2.0, 1.5), times=[1.0], masks={k: more > 90 + 10 * i for i, k in enumerate(want)}, layers={"ü x": more * 2})
    omezarr.write(new, path, mode="a", append_dim="time")
    validate_store(path)
    grown = xafm.open(path)
    np.testing.assert_array_equal(grown.values, np.concatenate([data, more]))
    for name, m in new.afm.masks.items():
        np.testing.assert_array_equal(grown.afm.masks[name].values, np.concatenate([want[name], m.values]))
    assert sorted(p.name for p in (path / "labels").iterdir() if p.is_dir()) == ["%5F_init", "a%20b", "grains%20%26%20%C2%B5"]
    attrs = zarr.open_group(str(path), mode="r").attrs.asdict()
    win = attrs.get("ome", attrs)["omero"]["channels"][0]["window"]
    assert win["min"] == float(data.min()) and win["max"] == float(more.max())

    # over HTTP such a store loses its labels in ome-zarr-py: the bug the new keys fix
    shutil.copytree(path, served[0] / "old.ome.zarr")
    nodes = ome_zarr_nodes(f"{served[1]}/old.ome.zarr")
    assert not any(any(s.__class__.__name__ == "Label" for s in n.specs) for n in nodes)
