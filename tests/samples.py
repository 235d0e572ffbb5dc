"""The sample files the shared reader and writer contracts run on: every readable format
has at least one, real where a public file exists (``../shared/data``), written by xafm
or by ``xafm.testing`` otherwise.

A sample knows its format, how to make (or find) the file in a folder, what reading it
must give (from ``reference.json`` or from the stack it was written from, never from
the code under test), and how to damage it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import xafm
from tests.helpers import reference, shared_file


@dataclass(frozen=True)
class Expected:
    """What reading a sample gives: the stack's shape, (y, x) pixel size in nm (None: not
    stated by the source), the default channel, and min / max / mean of the values."""

    shape: tuple[int, ...]
    pixel_nm: tuple[float, float] | None
    channel: str
    stats: tuple[float, float, float]
    dims: tuple[str, ...] = ("time", "y", "x")


@dataclass(frozen=True)
class Sample:
    id: str
    format: str
    make: Callable[[Path], Path]
    expected: Callable[[], Expected]
    #: how to damage a copy: "truncate" the file, or a callable(path) -> path to open
    damage: str | Callable[[Path], Path] = "truncate"
    warnings: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------------------
# stacks xafm writes
# --------------------------------------------------------------------------------------
def known_stack() -> Any:
    """A stack with everything xafm keeps: uneven times, non-square pixels, per-frame
    metadata, a mask and a layer, extra attrs."""
    rng = np.random.default_rng(2)
    values = rng.normal(10.0, 3.0, size=(6, 9, 7)).astype(np.float32)
    da = xafm.stack(
        values,
        pixel_size_nm=(1.5, 2.0),
        times=[0.0, 0.1, 0.25, 0.3, 0.5, 0.8],
        frame_metadata=[{"line_rate": 90.0 + i, "scan_direction": "up" if i % 2 else "down"} for i in range(6)],
        attrs={"operator": "ö µ Ω", "setpoint_v": 0.25},
        channel="height",
    )
    da = da.afm.remove_plane(keep_layer=True)
    return da.afm.mask_threshold(0.5, name="grains & µ")


def _own(fmt: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        return xafm.registry.write(fmt, known_stack(), folder / f"known{xafm.registry.get(fmt).suffixes[0]}")

    return make


def _own_expected() -> Expected:
    v = known_stack().values.astype(np.float32)
    return Expected(v.shape, (1.5, 2.0), "height", (float(v.min()), float(v.max()), float(v.mean(dtype=np.float64))))


# --------------------------------------------------------------------------------------
# real files
# --------------------------------------------------------------------------------------
def _real(group: str, name: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        return shared_file(group, name)

    return make


def _afm_expected(name: str, channel: str) -> Callable[[], Expected]:
    def expected() -> Expected:
        ref = reference("afm")[name]
        shape = tuple(ref["shape"])
        px = float(ref["pixel_to_nm"])
        return Expected((1, *shape) if len(shape) == 2 else shape, (float(ref.get("pixel_y_nm", px)), px), channel, (ref["min"], ref["max"], ref["mean"]))

    return expected


def _nd2_expected() -> Expected:
    ref = reference("other")["cluster.nd2"]
    s = ref["sizes"]
    um = ref["voxel_size_um"]
    return Expected(
        (s["T"], s["Z"], s["C"], s["Y"], s["X"]), (um[1] * 1e3, um[0] * 1e3), "intensity",
        (ref["min"], ref["max"], ref["mean"]), dims=("time", "z", "channel", "y", "x"),
    )  # fmt: skip


def _ome_tif_expected() -> Expected:
    ref = reference("other")["multi-channel.ome.tif"]
    return Expected((1, *ref["shape"]), None, "intensity", (ref["min"], ref["max"], ref["mean"]), dims=("time", "channel", "y", "x"))


def _blobs_expected() -> Expected:
    ref = reference("other")["blobs_image_v04.ome.zarr"]
    return Expected((1, *ref["shape"]), None, "intensity", (ref["min"], ref["max"], ref["mean"]), dims=("time", "channel", "y", "x"))


def _copy_store(group: str, name: str) -> Callable[[Path], Path]:
    """A folder sample copied (so that damaging it leaves the shared file alone)."""

    def make(folder: Path) -> Path:
        dst = folder / name
        shutil.copytree(shared_file(group, name), dst)
        return dst

    return make


# --------------------------------------------------------------------------------------
# synthetic vendor files and folders
# --------------------------------------------------------------------------------------
ASD_LEVELS = np.arange(5 * 8 * 6, dtype=np.int16).reshape(5, 8, 6) % 4096


def _asd(folder: Path) -> Path:
    from xafm.testing import write_asd

    return write_asd(folder / "synthetic.asd", ASD_LEVELS, frame_time_ms=50.0, x_nm=12, y_nm=16)


def _asd_expected() -> Expected:
    # unipolar 9.99 V over 12 bits, z gain 2 x extension 10 nm/V (write_asd's defaults), as docs/formats.md says
    v = ASD_LEVELS * (-9.99 / 4096 * 2.0 * 10.0)
    return Expected(v.shape, (16 / 8, 12 / 6), "topography", (float(v.min()), float(v.max()), float(v.mean())))


def _jpk_folder(folder: Path) -> Path:
    """Three copies of the real JPK image, a folder of frames as instruments write it."""
    video = folder / "jpk_video"
    video.mkdir()
    for i in range(3):
        shutil.copyfile(shared_file("afm", "sample_0.jpk"), video / f"frame_{i}.jpk")
    return video


def _jpk_folder_expected() -> Expected:
    one = _afm_expected("sample_0.jpk", "height_trace")()
    return Expected((3, *one.shape[1:]), one.pixel_nm, one.channel, one.stats)


def _damage_zarr(store: Path) -> Path:
    meta = store / "zarr.json" if (store / "zarr.json").exists() else store / ".zattrs"
    meta.write_bytes(meta.read_bytes()[: meta.stat().st_size // 2])
    return store


def _damage_second_frame(folder: Path) -> Path:
    second = sorted(folder.iterdir())[1]
    second.write_bytes(second.read_bytes()[: second.stat().st_size // 3])
    return folder


NO_SIZE = "no physical pixel size"
SAMPLES = [
    Sample("own.h5", "h5", _own("h5"), _own_expected),
    Sample("own.npz", "npz", _own("npz"), _own_expected),
    Sample("own.ome.tif", "tif", _own("tif"), _own_expected),
    Sample("multi-channel.ome.tif", "tif", _real("other", "multi-channel.ome.tif"), _ome_tif_expected, warnings=(NO_SIZE,)),
    Sample("own.ome.zarr", "zarr", _own("zarr"), _own_expected, damage=_damage_zarr),
    Sample("blobs_image_v04.ome.zarr", "zarr", _copy_store("other", "blobs_image_v04.ome.zarr"), _blobs_expected, damage=_damage_zarr, warnings=(NO_SIZE,)),
    Sample("asd_sample_0.asd", "asd", _real("afm", "asd_sample_0.asd"), _afm_expected("asd_sample_0.asd", "topography")),
    Sample("synthetic.asd", "asd", _asd, _asd_expected),
    Sample("sample_0.h5-jpk", "h5-jpk", _real("afm", "sample_0.h5-jpk"), _afm_expected("sample_0.h5-jpk", "height_trace")),
    Sample("sample_0.jpk", "jpk", _real("afm", "sample_0.jpk"), _afm_expected("sample_0.jpk", "height_trace")),
    Sample("sample_0.jpk-qi-image", "jpk", _real("afm", "sample_0.jpk-qi-image"), _afm_expected("sample_0.jpk-qi-image", "height_trace")),
    Sample("old_bruker.002", "nanoscope", _real("afm", "old_bruker.002"), _afm_expected("old_bruker.002", "Height")),
    Sample("IgorIBWReader_P0089OP0027.ibw", "ibw", _real("afm", "IgorIBWReader_P0089OP0027.ibw"), _afm_expected("IgorIBWReader_P0089OP0027.ibw", "HeightRetrace")),
    Sample("PTO_110_Virgin0001.gwy", "gwy", _real("afm", "PTO_110_Virgin0001.gwy"), _afm_expected("PTO_110_Virgin0001.gwy", "HeightRetrace")),
    Sample("pyspm_test.sxm", "sxm", _real("afm", "pyspm_test.sxm"), _afm_expected("pyspm_test.sxm", "Z_forward")),
    Sample("sample_0.stp", "wsxm", _real("afm", "sample_0.stp"), _afm_expected("sample_0.stp", "Topography")),
    Sample("sample_0_1.topostats", "topostats", _real("afm", "sample_0_1.topostats"), _afm_expected("sample_0_1.topostats", "image")),
    Sample("cluster.nd2", "nd2", _real("other", "cluster.nd2"), _nd2_expected),
    Sample("jpk_video", "folder", _jpk_folder, _jpk_folder_expected, damage=_damage_second_frame, warnings=("distinct start times",)),
]


# --------------------------------------------------------------------------------------
# plain TIFF and ImageJ hyperstacks (xafm.formats.tiff); xafm's OME-TIFF under a plain name
# --------------------------------------------------------------------------------------
TIFF_HYPERSTACK = (np.random.default_rng(5).integers(0, 60000, size=(4, 3, 2, 9, 7))).astype(np.uint16)
TIFF_PLAIN = np.random.default_rng(6).normal(0.0, 4.0, size=(5, 8, 6)).astype(np.float32)
NO_CALIBRATION = "no pixel calibration"


def _imagej_hyperstack(folder: Path) -> Path:
    from xafm.testing.tiff import write_imagej_tiff

    return Path(write_imagej_tiff(folder / "hyperstack.tif", TIFF_HYPERSTACK, "TZCYX", pixel_size_nm=(2.5, 2.0), unit="um", z_step_nm=300.0, frame_interval=0.2))


def _imagej_hyperstack_expected() -> Expected:
    v = TIFF_HYPERSTACK
    return Expected(v.shape, (2.5, 2.0), "intensity", stats_of(v), dims=("time", "z", "channel", "y", "x"))


def _plain_stack(folder: Path) -> Path:
    from xafm.testing.tiff import write_plain_tiff

    return Path(write_plain_tiff(folder / "plain.tiff", TIFF_PLAIN, compression="zlib"))


def _plain_stack_expected() -> Expected:
    return Expected(TIFF_PLAIN.shape, None, "C0", stats_of(TIFF_PLAIN))


def _own_plain_name(folder: Path) -> Path:
    return xafm.registry.write("tif", known_stack(), folder / "known.tif")


SAMPLES += [
    Sample("imagej_hyperstack.tif", "tiff", _imagej_hyperstack, _imagej_hyperstack_expected),
    Sample("plain_stack.tiff", "tiff", _plain_stack, _plain_stack_expected, warnings=(NO_CALIBRATION,)),
    Sample("own.tif", "tif", _own_plain_name, _own_expected),
]


# issue 11: Park Systems TIFF (xafm.formats.park)
PARK_RAW = (np.arange(6 * 5, dtype=np.int16).reshape(6, 5) * 37 - 400).astype(np.int16)


def _park_int16(folder: Path) -> Path:
    from xafm.testing.park import write_park

    return Path(write_park(folder / "synthetic_park.tiff", PARK_RAW, version=1, gain=-0.25, z_offset=3.0, z_unit="nm", scan_size_um=(0.05, 0.03)))


def _park_int16_expected() -> Expected:
    # gain * (raw + offset) in nm; 30 nm over 6 rows, 50 nm over 5 columns (docs/formats.md, "Park Systems TIFF")
    v = (PARK_RAW.astype(np.float64) + 3.0) * -0.25
    return Expected((1, *v.shape), (30 / 6, 50 / 5), "Topography", stats_of(v))


SAMPLES += [
    Sample("park_example.tiff", "park", _real("afm", "park_example.tiff"), _afm_expected("park_example.tiff", "Z Height")),
    Sample("park_forcecurve.tiff", "park", _real("afm", "park_forcecurve.tiff"), _afm_expected("park_forcecurve.tiff", "Topography")),
    Sample("synthetic_park.tiff", "park", _park_int16, _park_int16_expected),
]


# issue 11: Nanosurf .nid and .nhf
def _nhf_synthetic(folder: Path) -> Path:
    from xafm.testing.nhf import write_nhf

    raw = np.arange(5 * 7, dtype=np.int32).reshape(5, 7) * 1000
    return write_nhf(
        folder / "synthetic.nhf",
        {"Forward": {"Topography": raw}, "Backward": {"Topography": raw[:, ::-1]}},
        size_m=(7e-7, 1e-6),
        calibration={"Topography": (-(2.0**31) * 1e-12, (2.0**31 - 1) * 1e-12, "m")},  # 1e-12 m a count
        curve_samples=4,
    )


def _nhf_synthetic_expected() -> Expected:
    v = np.arange(5 * 7, dtype=np.float64).reshape(5, 7) * 1000 * 1e-3  # in nm
    return Expected((1, 5, 7), (200.0, 100.0), "Image 1 - Forward - Topography", stats_of(v))


SAMPLES += [
    Sample(name, "nid", _real("afm", name), _afm_expected(name, "Scan forward (Z-Axis)"))
    for name in ("nanosurf_driveafm.nid", "nanosurf_flexafm_nonsquare.nid", "nanosurf_stm.nid")
]
SAMPLES += [
    Sample("nanosurf_wavemode.nhf", "nhf", _real("afm", "nanosurf_wavemode.nhf"), _afm_expected("nanosurf_wavemode.nhf", "Image 1 - Forward - Topography")),
    Sample("synthetic.nhf", "nhf", _nhf_synthetic, _nhf_synthetic_expected),
]


# issue 11: NT-MDT .mdt
#: Where docs/formats.md ("NT-MDT .mdt", the sample) places the one image of the shared
#: sample: frame 1, an MDA frame, whose x / y axis scales (f64, µm) are at bytes 45109 /
#: 45233, its measurand's bias / scale (f64) at 45349 / 45357, and 256 x 256 float64 at 45429.
MDT_SAMPLE = {"x_scale": 45109, "y_scale": 45233, "bias": 45349, "scale": 45357, "data": 45429, "shape": (256, 256)}


def mdt_sample_by_hand(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """The sample's image (file order) and (y, x) pixel size in nm, read with numpy at the
    documented offsets, not with xafm's reader."""
    at = MDT_SAMPLE

    def f8(offset: int) -> float:
        return float(np.fromfile(path, "<f8", 1, offset=offset)[0])

    ny, nx = at["shape"]
    raw = np.fromfile(path, "<f8", ny * nx, offset=at["data"]).reshape(ny, nx)
    return f8(at["bias"]) + f8(at["scale"]) * raw, (f8(at["y_scale"]) * 1e3, f8(at["x_scale"]) * 1e3)


def _mdt_expected() -> Expected:
    values, pixel = mdt_sample_by_hand(shared_file("afm", "ntmdt_current_map.mdt"))
    return Expected((1, *values.shape), pixel, "1F:Iprobe", stats_of(values))


def _mdt_synthetic(folder: Path) -> Path:
    from xafm.testing.mdt import mda_frame, scanned_frame, text_frame, write_mdt

    return write_mdt(folder / "synthetic.mdt", [text_frame(), mda_frame(MDT_LEVELS[1].astype("<f4"), title="map"), scanned_frame(MDT_LEVELS[0], z_step=0.25, z_offset=3.0, z_unit=0, title="Topography")])


MDT_LEVELS = np.random.default_rng(11).integers(-3000, 3000, size=(2, 6, 9)).astype(np.int16)


def _mdt_synthetic_expected() -> Expected:
    v = (3.0 + 0.25 * MDT_LEVELS[0]) * 0.1  # z step and offset in Å (unit code 0), shown in nm
    return Expected((1, 6, 9), (2.0, 2.0), "Topography", stats_of(v))


SAMPLES += [
    Sample("ntmdt_current_map.mdt", "mdt", _real("afm", "ntmdt_current_map.mdt"), _mdt_expected),
    Sample("synthetic.mdt", "mdt", _mdt_synthetic, _mdt_synthetic_expected),
]


# issue 11: Bruker Nanoscope, every version (v7.2 to v10; channel names are Bruker's)
SAMPLES += [
    Sample("bruker_v10_peakforce.di", "nanoscope", _real("afm", "bruker_v10_peakforce.di"), _afm_expected("bruker_v10_peakforce.di", "Height Sensor")),
    Sample("bruker_v94_fastscan.spm", "nanoscope", _real("afm", "bruker_v94_fastscan.spm"), _afm_expected("bruker_v94_fastscan.spm", "Height Sensor")),
    Sample("bruker_v91_fastscan_nonsquare.001", "nanoscope", _real("afm", "bruker_v91_fastscan_nonsquare.001"), _afm_expected("bruker_v91_fastscan_nonsquare.001", "Height Sensor")),
    Sample("bruker_v72_dimension.di", "nanoscope", _real("afm", "bruker_v72_dimension.di"), _afm_expected("bruker_v72_dimension.di", "Height_trace")),
]


# issue 11: what is not an image (.ibw) and the .asd version-0 sample
SAMPLES += [
    # its phase channel has no sensitivity in the header: read as volts, with a warning
    Sample("asd_v0_sample.asd", "asd", _real("afm", "asd_v0_sample.asd"), _afm_expected("asd_v0_sample.asd", "topography"),
           warnings=("phase sensitivity is 0",)),
]


@dataclass(frozen=True)
class NotAnImage:
    """A sound file that is not an image: every way into xafm refuses it with
    ``NotAnImageError`` saying ``this is a <kind> file`` (tests/test_not_an_image.py)."""

    id: str
    format: str
    make: Callable[[Path], Path]
    kind: str


def _ibw_force_curve(folder: Path) -> Path:
    from xafm.testing.ibw import write_force_curve

    return Path(write_force_curve(folder / "force_curve.ibw")[0])


def _ibw_force_map(folder: Path) -> Path:
    from xafm.testing.ibw import write_force_map

    return Path(write_force_map(folder / "force_map.ibw")[0])


def _nanoscope_force(kind: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        from xafm.testing import write_nanoscope_force

        return Path(write_nanoscope_force(folder / f"force_{kind}.spm", kind=kind))

    return make


def _nid_spectra(folder: Path) -> Path:
    from xafm.testing.nid import write_nid_spectroscopy

    return Path(write_nid_spectroscopy(folder / "spectra.nid", [np.arange(100), np.arange(80)]))


def _nhf_spectra(folder: Path) -> Path:
    from xafm.testing.nhf import write_nhf

    return Path(write_nhf(folder / "spectra.nhf", {}, spectroscopy=4))


def _park_force_distance(folder: Path) -> Path:
    from xafm.testing.park import spectroscopy_header, write_park

    return Path(write_park(folder / "fd.tiff", np.ones((4, 4), np.float32), image_type=2, with_data=False, spectroscopy=spectroscopy_header(curves=3)))


def _park_line_profile(folder: Path) -> Path:
    from xafm.testing.park import write_park

    return Path(write_park(folder / "profile.tiff", np.ones((1, 8), np.float32), image_type=1))


def _mdt_curves(folder: Path) -> Path:
    from xafm.testing.mdt import mda_frame, raw_frame, text_frame, write_mdt

    return Path(write_mdt(folder / "curves.mdt", [text_frame(), raw_frame(190), mda_frame(np.ones(7), dims=1)]))


#: Every format's force curves and spectra that xafm can tell from images.
NOT_IMAGES = [
    NotAnImage("force_curve.ibw", "ibw", _ibw_force_curve, "force-curve"),
    NotAnImage("force_map.ibw", "ibw", _ibw_force_map, "force-map"),
    NotAnImage("force_curve.spm", "nanoscope", _nanoscope_force("curve"), "force-curve"),
    NotAnImage("force_volume.spm", "nanoscope", _nanoscope_force("volume"), "force-curve"),
    NotAnImage("spectra.nid", "nid", _nid_spectra, "spectroscopy"),
    NotAnImage("spectra.nhf", "nhf", _nhf_spectra, "spectroscopy"),
    NotAnImage("force_distance.tiff", "park", _park_force_distance, "spectroscopy"),
    NotAnImage("line_profile.tiff", "park", _park_line_profile, "line-profile"),
    NotAnImage("curves.mdt", "mdt", _mdt_curves, "spectroscopy"),
]


# issue 11: multi-file OME-TIFF sets (xafm.formats.ometiff.sets), written with tifffile
OME_SET = np.random.default_rng(11).normal(3.0, 1.5, size=(4, 1, 1, 6, 5)).astype(np.float32)  # T, C, Z, y, x
OME_SET_TIMES = [0.0, 0.2, 0.5, 0.6]


def _ome_set(companion: bool) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        from xafm.testing.ometiff_sets import write_ome_tiff_set

        got = write_ome_tiff_set(folder, OME_SET, stem="omeset", companion=companion, pixel_size_nm=(1.5, 2.0), times_s=OME_SET_TIMES, channel_names=["height"])
        return Path(got["companion"]) if companion else Path(got["members"][1])

    return make


def _ome_set_expected() -> Expected:
    v = OME_SET[:, 0, 0]
    return Expected(v.shape, (1.5, 2.0), "height", stats_of(v))


SAMPLES += [
    Sample("omeset.companion.ome", "ome-companion", _ome_set(True), _ome_set_expected),
    Sample("omeset_1.ome.tif", "tif", _ome_set(False), _ome_set_expected),
]


def by_format() -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for s in SAMPLES:
        out.setdefault(s.format, []).append(s)
    return out


def make(sample: Sample, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(sample.make(folder))


def damaged_copy(sample: Sample, path: Path, folder: Path) -> Path:
    """A damaged copy of a sample, named like it, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / path.name
    if path.is_dir():
        shutil.copytree(path, dst)
    else:
        shutil.copyfile(path, dst)
    if sample.damage == "truncate":
        size = dst.stat().st_size
        with open(dst, "r+b") as fh:
            fh.truncate(size // 2)
        return dst
    assert callable(sample.damage)
    return sample.damage(dst)


def garbage_copy(sample: Sample, path: Path, folder: Path) -> Path:
    """Random bytes under the sample's name (folders: their metadata or a frame file)."""
    rng = np.random.default_rng(len(path.name))
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / path.name
    if path.is_dir():
        shutil.copytree(path, dst)
        target = dst / "zarr.json" if (dst / "zarr.json").exists() else dst / ".zattrs"
        if not target.exists():
            target = sorted(p for p in dst.iterdir() if p.is_file())[1]
        target.write_bytes(rng.integers(0, 256, size=4096, dtype=np.uint8).tobytes())
        return dst
    dst.write_bytes(rng.integers(0, 256, size=max(4096, min(path.stat().st_size, 65536)), dtype=np.uint8).tobytes())
    return dst


def stats_of(values: np.ndarray) -> tuple[float, float, float]:
    v = np.asarray(values, dtype=np.float64)
    return float(np.nanmin(v)), float(np.nanmax(v)), float(np.nanmean(v))
