"""The writer contract: what every writable format in the table does, with numpy and dask
stacks alike. The test parameters are the table itself, so a new writer runs all of it;
a write-only format needs a decoder in ``DECODERS`` (an independent reader of its files).
"""

from __future__ import annotations

import inspect
import json

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import xafm
from tests import samples
from xafm import registry
from xafm.accessor import AfmAccessor, _Delegate
from xafm.core import blocks

#: tiny test stacks make the default 100 nm scale bar too long for the frame
pytestmark = pytest.mark.filterwarnings("ignore:a 100 nm scale bar")

WRITABLE = registry.writable()
READABLE_WRITERS = [n for n in WRITABLE if registry.get(n).can_read]


def _gif_frames(path):
    from PIL import Image

    with Image.open(path) as im:
        return int(im.n_frames), im.size


def _video_frames(path):
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    n = sum(1 for _ in reader)
    return n, tuple(meta["size"])


def _png_frames(folder):
    from PIL import Image

    files = sorted(folder.iterdir())
    with Image.open(files[0]) as im:
        size = im.size
    return len(files), size


#: Independent readers of the write-only formats' files: (frames, (width, height)).
DECODERS = {
    "gif": _gif_frames,
    **dict.fromkeys(("mp4", "m4v", "mov", "avi", "mkv", "webm"), _video_frames),
    "png": _png_frames,
}


def _write(fmt, da, path, **kw):
    return registry.write(fmt, da, path, **kw)


def _dest(tmp_path, fmt, stem="s"):
    return tmp_path / f"{stem}{registry.get(fmt).suffixes[0]}"


def _as(da, backing):
    return da.chunk({"time": 2}) if backing == "dask" else da


def test_every_writable_format_can_be_checked():
    assert WRITABLE
    missing = [n for n in WRITABLE if not registry.get(n).can_read and n not in DECODERS]
    assert missing == [], f"write-only formats without an independent decoder in DECODERS: {missing}"


@pytest.mark.parametrize("backing", ["numpy", "dask"])
@pytest.mark.parametrize("fmt", WRITABLE)
def test_round_trip(fmt, backing, tmp_path):
    da = _as(samples.known_stack(), backing)
    path = _write(fmt, da, _dest(tmp_path, fmt))
    assert path.exists()
    if not registry.get(fmt).can_read:
        n, size = DECODERS[fmt](path)
        assert n == da.sizes["time"] and min(size) > 0
        return
    back = xafm.open(path)
    want = samples.known_stack()
    assert back.dims == want.dims and back.shape == want.shape and back.name == want.name
    np.testing.assert_allclose(back.values, want.values, rtol=1e-6)
    for name, coord in want.coords.items():
        np.testing.assert_array_equal(np.asarray(back.coords[name].values), np.asarray(coord.values), err_msg=name)
    assert back.afm.frame_metadata == want.afm.frame_metadata
    assert {k: (np.asarray(v).tolist()) for k, v in back.attrs.items() if k != "xafm_provenance"} == {
        k: (np.asarray(v).tolist()) for k, v in want.attrs.items() if k != "xafm_provenance"
    }
    for kind in ("masks", "layers"):
        assert set(getattr(back.afm, kind)) == set(getattr(want.afm, kind))
    recs = back.afm.provenance
    assert [r["type"] for r in recs] == [r["type"] for r in da.afm.provenance] + ["export", "read"]
    assert recs[-2]["format"] == fmt and recs[-2]["path"] == str(path)


@pytest.mark.parametrize("backing", ["numpy", "dask"])
@pytest.mark.parametrize("fmt", WRITABLE)
def test_writing_leaves_the_stack_untouched(fmt, backing, tmp_path):
    da = _as(samples.known_stack(), backing)
    before = da.copy(deep=True)
    attrs_before = json.dumps({k: np.asarray(v).tolist() for k, v in da.attrs.items()})
    _write(fmt, da, _dest(tmp_path, fmt))
    xr.testing.assert_identical(da, before)
    assert json.dumps({k: np.asarray(v).tolist() for k, v in da.attrs.items()}) == attrs_before
    if backing == "dask":
        assert isinstance(da.data, dsa.Array)


@pytest.mark.parametrize("fmt", WRITABLE)
def test_overwrite_is_refused_then_allowed(fmt, tmp_path):
    da = samples.known_stack()
    path = _write(fmt, da, _dest(tmp_path / "new" / "dir", fmt))  # creates the folders
    snapshot = _snapshot(path)
    with pytest.raises(xafm.OutputExistsError) as err:
        _write(fmt, da.copy(data=da.values[::-1]), path)
    assert isinstance(err.value, FileExistsError) and str(path) in str(err.value)
    assert _snapshot(path) == snapshot
    other = da.copy(data=da.values[::-1])  # other frames, same scale
    _write(fmt, other, path, overwrite=True)
    assert _snapshot(path) != snapshot
    if registry.get(fmt).can_read:
        np.testing.assert_allclose(xafm.open(path).values, other.values, rtol=1e-6)


def _snapshot(path):
    if path.is_dir():
        return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    return path.read_bytes()


def _failing_stack(n_ok_chunks=2):
    def block(block_id=None):
        if block_id[0] >= n_ok_chunks:
            raise ZeroDivisionError("chunk exploded")
        return np.ones((1, 8, 8), np.float32)

    arr = dsa.map_blocks(block, chunks=((1,) * 4, (8,), (8,)), dtype=np.float32)
    return xafm.stack(arr, pixel_size_nm=1.0)


@pytest.mark.parametrize("fmt", WRITABLE)
def test_a_failure_midway_leaves_nothing_and_keeps_what_was_there(fmt, tmp_path, monkeypatch):
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 1)  # one frame per block: fail after writing some
    path = _dest(tmp_path, fmt)
    with pytest.raises(xafm.WriteError, match="chunk exploded") as err:
        _write(fmt, _failing_stack(), path)
    assert str(path) in str(err.value)
    assert list(tmp_path.iterdir()) == []
    _write(fmt, samples.known_stack(), path)
    snapshot = _snapshot(path)
    with pytest.raises(xafm.WriteError):
        _write(fmt, _failing_stack(), path, overwrite=True)
    assert _snapshot(path) == snapshot
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("fmt", WRITABLE)
def test_unknown_options_are_refused_before_writing(fmt, tmp_path):
    path = _dest(tmp_path, fmt)
    with pytest.raises(xafm.UnknownOptionError) as err:
        _write(fmt, samples.known_stack(), path, overwrit=True)
    assert "did you mean 'overwrite'" in str(err.value)
    for option in registry.get(fmt).write_options():
        assert option in str(err.value)
    assert not path.exists()


def test_accessor_methods_are_the_writers_themselves():
    da = samples.known_stack()
    delegates = {name: d for name, d in vars(AfmAccessor).items() if isinstance(d, _Delegate) and d.format}
    assert {d.format for d in delegates.values()} <= set(WRITABLE)
    for name, d in delegates.items():
        writer = registry.get(d.format).write
        method = getattr(da.afm, name)
        params = list(inspect.signature(writer).parameters.values())[1:]
        if "storage_options" not in inspect.signature(writer).parameters:  # registry.write's, for URLs
            params.append(inspect.Parameter("storage_options", inspect.Parameter.KEYWORD_ONLY, default=None))
        assert list(inspect.signature(method).parameters.values()) == params, name
        assert method.__doc__ == writer.__doc__ and method.__doc__, name


def test_export_reaches_every_writer(tmp_path):
    da = samples.known_stack()
    out = da.afm.export(tmp_path, "all", WRITABLE)
    assert set(out) == set(WRITABLE)
    for fmt, path in out.items():
        assert path.name == f"all{registry.get(fmt).suffixes[0]}" and path.exists()


# --------------------------------------------------------------------------------------
# property-based round trips of every reader/writer pair, numpy and dask
# --------------------------------------------------------------------------------------
@st.composite
def stacks(draw):
    n = draw(st.integers(1, 4))
    ny, nx = draw(st.integers(1, 9)), draw(st.integers(2, 9))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int16, np.uint8]))
    seed = draw(st.integers(0, 2**16))
    values = np.random.default_rng(seed).normal(50, 20, size=(n, ny, nx)).clip(0, 250).astype(dtype)
    pixel = (draw(st.floats(0.01, 100)), draw(st.floats(0.01, 100)))
    steps = draw(st.lists(st.floats(0.001, 10), min_size=n, max_size=n))
    da = xafm.stack(values, pixel_size_nm=pixel, times=np.cumsum(steps) - steps[0], channel=draw(st.sampled_from(["height", "Höhe µm", "phase_2"])))
    if draw(st.booleans()):
        da = da.afm.with_mask(draw(st.sampled_from(["m", "grains / µ", "a.b"])), values > 50)
    return da


def _stored(fmt, dtype):
    if fmt in ("h5", "npz"):
        return np.dtype(np.float32)  # playNano's layout stores float32
    return np.dtype(dtype)


@settings(max_examples=8, deadline=None)
@given(da=stacks(), backing=st.sampled_from(["numpy", "dask"]), fmt=st.sampled_from(READABLE_WRITERS))
def test_property_round_trip(da, backing, fmt, tmp_path_factory):
    path = _dest(tmp_path_factory.mktemp("prop"), fmt)
    _write(fmt, _as(da, backing), path)
    back = xafm.open(path)
    assert back.shape == da.shape and back.name == da.name
    np.testing.assert_array_equal(back.values, da.values.astype(_stored(fmt, da.dtype)))
    np.testing.assert_allclose(back.time.values, da.time.values, rtol=1e-12)
    np.testing.assert_allclose(xafm.core.model.pixel_size_nm(back), xafm.core.model.pixel_size_nm(da), rtol=1e-9)
    assert set(back.afm.masks) == set(da.afm.masks)
    for k, m in da.afm.masks.items():
        np.testing.assert_array_equal(back.afm.masks[k].values, m.values)


# --------------------------------------------------------------------------------------
# crops keep their place through every reader/writer pair (issue 12)
# --------------------------------------------------------------------------------------
@st.composite
def crops(draw):
    """A random crop (a plain ``isel`` slice: its coordinates are xarray's labels) of a
    stack that starts at 0 or, already a crop, anywhere (negative too)."""
    ny, nx = draw(st.integers(2, 40)), draw(st.integers(2, 40))
    pixel = (draw(st.floats(0.01, 200)), draw(st.floats(0.01, 200)))
    origin = draw(st.none() | st.tuples(st.floats(-1e5, 1e5), st.floats(-1e5, 1e5)))
    values = np.random.default_rng(draw(st.integers(0, 2**16))).normal(0, 5, size=(2, ny, nx)).astype(np.float32)
    da = xafm.stack(values, pixel_size_nm=pixel, origin_nm=origin)
    y0 = draw(st.integers(0, ny - 2))
    x0 = draw(st.integers(0, nx - 2))
    y1 = draw(st.integers(y0 + 2, ny))
    x1 = draw(st.integers(x0 + 1, nx))
    return da.isel(y=slice(y0, y1), x=slice(x0, x1))


@settings(max_examples=12, deadline=None)
@given(crop=crops(), backing=st.sampled_from(["numpy", "dask"]), fmt=st.sampled_from(READABLE_WRITERS))
def test_property_crops_keep_their_place(crop, backing, fmt, tmp_path_factory):
    path = _dest(tmp_path_factory.mktemp("crop"), fmt)
    _write(fmt, _as(crop, backing), path)
    back = xafm.open(path)
    for dim in ("y", "x"):
        np.testing.assert_allclose(back[dim].values, crop[dim].values, rtol=0, atol=1e-9, err_msg=dim)
    np.testing.assert_array_equal(back.values, crop.values)
