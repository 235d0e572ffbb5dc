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
