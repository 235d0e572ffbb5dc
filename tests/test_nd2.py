"""The Nikon ``.nd2`` reader: the real 5-D file against the ``nd2`` package, laziness
without open handles, and (through a stand-in ``ND2File``) layouts the real file lacks:
no time loop, XY positions, RGB, multi-component channels and binary layers."""

from __future__ import annotations

import json
import pickle
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import psutil
import pytest
import xarray as xr

import xafm
from tests.helpers import raise_if_dask_computes, reference, shared_file
from xafm.core import conventions, model, provenance
from xafm.exceptions import ChannelError, CorruptFileError
from xafm.formats import nd2file

SAMPLE = ("other", "cluster.nd2")
NAMES = ["5-FAM/pH 9.0", "FM 4-64/2% CHAPS"]


def _open_paths():
    return {f.path for f in psutil.Process().open_files()}


# --------------------------------------------------------------------------------------
# the real file
# --------------------------------------------------------------------------------------
def test_real_file_matches_reference_and_nd2():
    import nd2

    path = shared_file(*SAMPLE)
    ref = reference("other")["cluster.nd2"]
    da = xafm.open(path)
    assert da.dims == ("time", "z", "channel", "y", "x")
    assert dict(da.sizes) == {"time": 3, "z": 10, "channel": 2, "y": 31, "x": 38}
    assert [ref["sizes"][k] for k in "TZCYX"] == list(da.shape)
    assert da.dtype == np.dtype(ref["dtype"])
    v = da.values
    assert (v.min(), v.max()) == (ref["min"], ref["max"])
    assert v.mean() == pytest.approx(ref["mean"], rel=1e-12)
    np.testing.assert_array_equal(v, nd2.imread(str(path)))
    vx, vy, vz = ref["voxel_size_um"]
    assert model.pixel_size_nm(da) == pytest.approx((vy * 1e3, vx * 1e3), rel=1e-9)
    np.testing.assert_allclose(da.z.values, np.arange(10) * vz * 1e3)
    assert da.z.attrs["units"] == "nm" and da.x.attrs["units"] == "nm" and da.time.attrs["units"] == "s"
    assert da.channel.values.tolist() == NAMES
    assert da.name == "intensity" and da.attrs["channel"] == "intensity" and da.attrs["units"] == ""
    assert da.attrs[conventions.PIXEL_SIZE_ATTR] == pytest.approx(vx * 1e3)
    rec = provenance.records(da)[-1]
    assert (rec["type"], rec["format"]) == ("read", "nd2")
    acq = json.loads(da.attrs[conventions.ACQUISITION_ATTR])
    assert acq["sizes"] == {"T": 3, "Z": 10, "C": 2, "Y": 31, "X": 38} and acq["is_legacy"] is False


def test_real_file_times_from_the_recorded_timestamps():
    import nd2

    path = shared_file(*SAMPLE)
    da = xafm.open(path)
    with nd2.ND2File(str(path)) as f:
        stamps = f.events(orient="list")["Time [s]"]
        start = f.frame_metadata(0).channels[0].time
    first = [stamps[t * 10] for t in range(3)]  # frame (t, z=0)
    np.testing.assert_allclose(da.time.values, np.array(first) - first[0])
    assert da.time.values[0] == 0.0 and np.all(np.diff(da.time.values) > 10)
    np.testing.assert_allclose(da.coords["acquisition_time_s"].values, first)
    epoch0 = (start.absoluteJulianDayNumber - 2440587.5) * 86400e3
    np.testing.assert_allclose(da.coords["start_epoch_ms"].values[0], epoch0, atol=1.0)
    # 2014-06-18 13:55:23 UTC (15:55 local in the text info)
    assert da.coords["start_epoch_ms"].values[0] == pytest.approx(1403099723392, abs=2000)


def test_real_file_channel_selection_and_errors():
    import nd2

    path = shared_file(*SAMPLE)
    assert xafm.channels(path) == NAMES
    ref = nd2.imread(str(path))
    one = xafm.open(path, channel=NAMES[1])
    assert one.dims == ("time", "z", "y", "x")
    assert one.name == "FM 4-64_2_ CHAPS"  # made netCDF-safe; the read record keeps the name
    assert provenance.records(one)[-1]["channel"] == NAMES[1]
    np.testing.assert_array_equal(one.values, ref[:, :, 1])
    with pytest.raises(ChannelError, match=r"no channel 'GFP'; available: \['5-FAM/pH 9.0', 'FM 4-64/2% CHAPS'\]"):
        xafm.open(path, channel="GFP")
    with pytest.raises(xafm.StackError, match="extra dims"):
        one.afm.remove_plane()  # the AFM methods need (time, y, x): a clear error, not a crash


def test_real_file_lazy_without_open_handles():
    path = shared_file(*SAMPLE)
    eager = xafm.open(path)
    before = _open_paths()
    with raise_if_dask_computes():
        lazy = xafm.open(path, chunks={})
        assert lazy.chunks is not None
        part = lazy.isel(time=[2, 0], z=slice(1, 8, 3), channel=1, y=slice(5, 9))
    assert _open_paths() == before
    graph = pickle.dumps(dict(lazy.data.dask))
    assert b"ND2File" not in graph and b"ResourceBacked" not in graph
    np.testing.assert_array_equal(part.values, eager.values[[2, 0]][:, 1:8:3, 1, 5:9])
    np.testing.assert_array_equal(lazy.values, eager.values)
    assert _open_paths() == before
    via_engine = xr.open_dataarray(path, engine="xafm", channel=NAMES[0])
    np.testing.assert_array_equal(via_engine.values, eager.values[:, :, 0])
    back = pickle.loads(pickle.dumps(lazy))
    np.testing.assert_array_equal(back.isel(time=1).values, eager.values[1])


def test_damaged_files(tmp_path):
    path = shared_file(*SAMPLE)
    good = path.read_bytes()
    p = tmp_path / "bad.nd2"
    for blob in (b"", b"garbage" * 100, good[:4096], good[: len(good) // 2], good[:-50000]):
        p.write_bytes(blob)
        before = _open_paths()
        with pytest.raises(CorruptFileError):
            xafm.open(p)
        assert _open_paths() == before


# --------------------------------------------------------------------------------------
# layouts the real file lacks, through a stand-in ND2File
# --------------------------------------------------------------------------------------
class FakeND2File:
    """Enough of ``nd2.ND2File`` for the reader: frames are (channels, y, x, components),
    squeezed like nd2's ``read_frame``."""

    spec: ClassVar[dict] = {}

    def __init__(self, path):
        s = self.spec
        self.sizes = s["sizes"]
        self.frames = s["frames"]  # (n_seq, n_ch, ny, nx, n_comp)
        _, n_ch, ny, nx, n_comp = self.frames.shape
        self.dtype = self.frames.dtype
        self.attributes = SimpleNamespace(heightPx=ny, widthPx=nx, channelCount=n_ch, componentCount=n_ch * n_comp, compressionType=None)
        vol = SimpleNamespace(axesCalibrated=(True, True, True))
        self.metadata = SimpleNamespace(channels=[SimpleNamespace(channel=SimpleNamespace(name=n), volume=vol) for n in s["names"]])
        self.experiment = s.get("experiment", [])
        self.binary_data = s.get("binary")
        self.version, self.is_legacy, self.text_info = (3, 0), False, {}

    def __enter__(self):
        return self

    def __exit__(self, *a):
        pass

    def voxel_size(self):
        return SimpleNamespace(x=0.5, y=0.25, z=2.0)

    def events(self, orient="list"):
        return {"Time [s]": list(self.spec.get("times", []))}

    def frame_metadata(self, i):
        return SimpleNamespace(channels=[SimpleNamespace(time=SimpleNamespace(absoluteJulianDayNumber=2440588.5, relativeTimeMs=1000.0))])

    def read_frame(self, i):
        return self.frames[i].squeeze()


@pytest.fixture
def fake(monkeypatch, tmp_path):
    p = tmp_path / "fake.nd2"
    p.write_bytes(b"\0" * 10**5)
    monkeypatch.setattr(nd2file, "_nd2", lambda: SimpleNamespace(ND2File=FakeND2File))

    def use(**spec):
        FakeND2File.spec = spec
        return p

    return use


def test_positions_no_time_and_binary_layers(fake, rng):
    frames = rng.integers(0, 1000, size=(6, 2, 4, 5, 1)).astype(np.uint16)  # seq over (P=2, Z=3)
    layer = [rng.random((4, 5)) > 0.5 if i != 4 else None for i in range(6)]
    p = fake(
        sizes={"P": 2, "Z": 3, "C": 2, "Y": 4, "X": 5},
        frames=frames,
        names=["GFP", "RFP"],
        experiment=[SimpleNamespace(type="XYPosLoop", parameters=SimpleNamespace(points=[SimpleNamespace(name="A1"), SimpleNamespace(name="B2")]))],
        binary=[SimpleNamespace(name="cells", data=layer)],
    )
    da = xafm.open(p)
    assert da.dims == ("time", "z", "channel", "position", "y", "x")
    assert da.position.values.tolist() == ["A1", "B2"] and da.time.values.tolist() == [0.0]
    want = frames[..., 0].reshape(2, 3, 2, 4, 5).transpose(1, 2, 0, 3, 4)[None]
    np.testing.assert_array_equal(da.values, want)
    assert model.pixel_size_nm(da) == (250.0, 500.0)
    mask = model.masks(da)["cells"]
    assert mask.dims == ("time", "z", "position", "y", "x") and mask.dtype == bool
    m = np.stack([x if x is not None else np.zeros((4, 5), bool) for x in layer]).reshape(2, 3, 4, 5).transpose(1, 0, 2, 3)
    np.testing.assert_array_equal(mask.values[0], m)
    # one channel: (time, z, position, y, x), the mask along
    gfp = xafm.open(p, channel="GFP")
    assert gfp.name == "GFP" and gfp.dims == ("time", "z", "position", "y", "x")
    np.testing.assert_array_equal(gfp.values, want[:, :, 0])
    lazy = xafm.open(p, chunks={})
    np.testing.assert_array_equal(lazy.isel(z=2, position=[1, 0], channel=1, time=0).values, want[0, 2, 1][[1, 0]])
    # netCDF-safe, masks included
    da.to_netcdf(p.with_suffix(".nc"), engine="h5netcdf")
    with xr.open_dataarray(p.with_suffix(".nc"), engine="h5netcdf") as back:
        np.testing.assert_array_equal(back.values, da.values)
        np.testing.assert_array_equal(back.coords["mask__cells"].values.astype(bool), mask.values)


def test_rgb_time_series(fake, rng):
    frames = rng.integers(0, 255, size=(2, 1, 3, 4, 3)).astype(np.uint8)
    p = fake(sizes={"T": 2, "Y": 3, "X": 4, "S": 3}, frames=frames, names=["Brightfield"], times=[5.0, 7.5])
    da = xafm.open(p)
    assert da.dims == ("time", "sample", "y", "x") and da.name == "Brightfield"
    np.testing.assert_array_equal(da.values, frames[:, 0].transpose(0, 3, 1, 2))
    assert da.time.values.tolist() == [0.0, 2.5]
    np.testing.assert_allclose(da.coords["start_epoch_ms"].values, [86400e3 - 1000 + 5000, 86400e3 - 1000 + 7500])


def test_single_channel_time_series_is_a_stack(fake, rng):
    frames = rng.integers(0, 255, size=(4, 1, 3, 2, 1)).astype(np.uint16)
    p = fake(sizes={"T": 4, "Y": 3, "X": 2}, frames=frames, names=["Z"], times=[0.0, 1.0, 1.0, 3.0])
    with pytest.warns(xafm.XafmWarning, match="frame times unusable"):
        da = xafm.open(p)  # repeated timestamps: the frame index instead, with a warning
    assert da.dims == ("time", "y", "x") and da.time.values.tolist() == [0.0, 1.0, 2.0, 3.0]
    np.testing.assert_array_equal(da.values, frames[:, 0, :, :, 0])
    np.testing.assert_array_equal(da.afm.remove_plane().shape, (4, 3, 2))  # a plain AFM stack


def test_multi_component_channels_are_split(fake, rng):
    frames = rng.integers(0, 255, size=(1, 1, 3, 2, 2)).astype(np.uint16)
    p = fake(sizes={"C": 2, "Y": 3, "X": 2}, frames=frames, names=["Cam"])
    assert xafm.channels(p) == ["Cam:0", "Cam:1"]
    np.testing.assert_array_equal(xafm.open(p, channel="Cam:1").values[0], frames[0, 0, :, :, 1])


def test_lying_sizes_are_refused_before_reading(fake, rng):
    frames = np.zeros((1, 1, 2, 2, 1), np.uint16)
    p = fake(sizes={"T": 2**20, "Y": 2**12, "X": 2**12}, frames=frames, names=["x"])
    FakeND2File.spec["frames"] = frames
    orig = FakeND2File.__init__

    def init(self, path):
        orig(self, path)
        self.attributes.heightPx = self.attributes.widthPx = 2**12

    FakeND2File.__init__ = init
    try:
        with pytest.raises(CorruptFileError, match="cannot fit in a 100000-byte file"):
            xafm.open(p)
    finally:
        FakeND2File.__init__ = orig


# --------------------------------------------------------------------------------------
# one parse of the metadata: frames read from their offsets, as nd2 reads them
# --------------------------------------------------------------------------------------
def _without_timestamps(da):
    out = da.copy()
    out.attrs.pop(conventions.PROVENANCE_ATTR)
    return out


def test_real_file_frames_read_from_offsets_equal_nd2s_own_reads(monkeypatch):
    import nd2

    path = shared_file(*SAMPLE)
    offsets = nd2file._describe(str(path))["offsets"]
    assert offsets is not None and offsets.shape == (30,) and np.all(np.diff(offsets) > 0)
    fast, fast_lazy = xafm.open(path), xafm.open(path, chunks={})
    # the same file read frame by frame through nd2.ND2File.read_frame
    monkeypatch.setattr(nd2file, "_frame_offsets", lambda *a: None)
    slow, slow_lazy = xafm.open(path), xafm.open(path, chunks={})
    assert _without_timestamps(fast).identical(_without_timestamps(slow))
    np.testing.assert_array_equal(fast.values, nd2.imread(str(path)))
    sel = {"time": [2, 0], "z": slice(1, 8, 3), "channel": 1, "y": slice(5, 9), "x": [3, 1]}
    np.testing.assert_array_equal(fast_lazy.isel(sel).values, slow_lazy.isel(sel).values)
    np.testing.assert_array_equal(fast_lazy.isel(sel).values, nd2.imread(str(path))[[2, 0]][:, 1:8:3, 1, 5:9][..., [3, 1]])


def test_real_file_reads_need_neither_nd2_nor_a_second_parse(monkeypatch):
    path = shared_file(*SAMPLE)
    want = xafm.open(path).values
    lazy = xafm.open(path, chunks={})

    def no_nd2():
        raise AssertionError("a frame read went through nd2")

    monkeypatch.setattr(nd2file, "_nd2", no_nd2)
    np.testing.assert_array_equal(lazy.isel(time=1, channel=0).values, want[1, :, 0])
    np.testing.assert_array_equal(lazy.values, want)


def test_real_file_metadata_as_nd2_gives_it():
    """The acquisition record holds nd2's dataclasses as ``dataclasses.asdict`` gives them."""
    import dataclasses

    import nd2

    path = shared_file(*SAMPLE)
    acq = json.loads(xafm.open(path).attrs[conventions.ACQUISITION_ATTR])
    with nd2.ND2File(str(path)) as f:
        want = {
            "attributes": list(f.attributes),
            "experiment": [dataclasses.asdict(e) for e in f.experiment],
            "channel_meta": [dataclasses.asdict(c) for c in f.metadata.channels],
            "text_info": dict(f.text_info),
        }
    for key, value in want.items():
        assert acq[key] == json.loads(conventions.json_text(value)), key


class FakeRawND2File(FakeND2File):
    """A stand-in that also tells where each frame's bytes are, as nd2's reader does."""

    def __init__(self, path):
        super().__init__(path)
        _, n_ch, _, nx, n_comp = self.frames.shape
        self.attributes.widthBytes = nx * n_ch * n_comp * self.dtype.itemsize
        self.attributes.bitsPerComponentInMemory = 8 * self.dtype.itemsize
        self._rdr = SimpleNamespace(_frame_offsets=self.spec["offsets"])


def test_frames_from_offsets_missing_and_cut_frames_are_zeros_as_in_nd2(monkeypatch, tmp_path, rng):
    frames = rng.integers(1, 60000, size=(4, 2, 3, 5, 1)).astype(np.uint16)  # seq over T=4, 2 channels
    stored = [np.ascontiguousarray(fr.transpose(1, 2, 0, 3)).tobytes() for fr in frames]  # (y, x, c, comp) on disk
    n = len(stored[0])
    blob = bytearray(b"\xee" * 500)
    offsets = {}
    for seq in (2, 0, 1):  # frame 3 is missing from the map; frames in any order on disk
        offsets[seq] = len(blob)
        blob += stored[seq] + b"\xee" * 7
    offsets[1] = len(blob) - n // 2  # a frame cut by the end of the file
    p = tmp_path / "raw.nd2"
    p.write_bytes(bytes(blob))
    FakeND2File.spec = {"sizes": {"T": 4, "C": 2, "Y": 3, "X": 5}, "frames": frames, "names": ["a", "b"], "offsets": offsets}
    monkeypatch.setattr(nd2file, "_nd2", lambda: SimpleNamespace(ND2File=FakeRawND2File))
    assert nd2file._describe(str(p))["offsets"].tolist() == [offsets[0], offsets[1], offsets[2], -1]
    da = xafm.open(p)
    want = frames[..., 0].copy()
    want[[1, 3]] = 0  # nd2 gives zeros for a frame it has no offset for, or one past the end
    np.testing.assert_array_equal(da.values, want)
    np.testing.assert_array_equal(xafm.open(p, chunks={}).isel(time=[2, 0], channel=1, x=slice(1, 4)).values, want[[2, 0], 1, :, 1:4])
