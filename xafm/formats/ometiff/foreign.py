"""Reading other tools' OME-TIFF (Bio-Formats, tifffile, microscope software; docs/formats.md,
"OME-TIFF from other tools"): every dim OME and tifffile know, named ``time``, ``z``,
``channel``, ``sample``, ... in the order (time, z, channel, others, y, x); length-1 dims
other than time dropped; ``channel=`` selects one channel by name; physical sizes in nm,
the y/x origin from the planes' PositionY/PositionX when all of them state the same, DeltaT in s, the acquisition date as per-frame epoch times; playNano's provenance tag."""

from __future__ import annotations

import json
import struct
import warnings
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import xarray as xr

from ...core import conventions, model, provenance
from ...core.lazy import DimView, LazyArray, RawFramesArray
from ...exceptions import ChannelError, CorruptFileError, FormatError, XafmWarning
from .._tiffsource import file_of, open_tiff
from . import omexml
from .names import NAME, READER, TAG_PROVENANCE
from .omexml import OME_TYPES, length_nm, pixel_size_nm, q, time_s
from .pages import Reshaped, TiffPlanesArray, WithSamples, image_runs

#: xafm dim names for tifffile's axis letters (the modulo letters follow tifffile).
AXIS_NAMES = {
    "T": "time", "Z": "z", "C": "channel", "S": "sample", "Y": "y", "X": "x", "A": "angle",
    "P": "phase", "R": "tile", "H": "lifetime", "E": "lambda", "L": "exposure", "V": "event",
    "Q": "other", "M": "mosaic", "I": "sequence",
}
#: Largest provenance tag xafm parses (a lying count must not make it read gigabytes).
MAX_TAG_BYTES = 64 * 2**20


def series_planes(path: str, s: Any) -> tuple[str, tuple[int, ...], list[tuple[str, int] | None], str]:
    """Unsqueezed axes/shape of a tifffile series, where each plane lives (file, page
    index; None for a missing plane) and the axes of one page."""
    axes, shape = s.get_axes(False), tuple(int(n) for n in s.get_shape(False))
    k = len(axes)
    while k > 0 and axes[k - 1] in "YXS":
        k -= 1
    page_axes = axes[k:]
    if "Y" not in page_axes or "X" not in page_axes:
        raise CorruptFileError(path, f"TIFF series axes {axes!r} have no Y/X image plane")
    planes: list[tuple[str, int] | None] = []
    for page in s.pages:
        if page is None:
            planes.append(None)
            continue
        index = page.index
        if not isinstance(index, (int, np.integer)):
            raise CorruptFileError(path, f"a plane in a sub-IFD ({index}) is not supported")
        planes.append((file_of(page.parent, path), int(index)))
    n_lead = int(np.prod(shape[:k], dtype=np.int64))
    if n_lead != len(planes):
        raise CorruptFileError(path, f"TIFF series {axes}{shape} needs {n_lead} planes, the file has {len(planes)}")
    return axes, shape, planes, page_axes


def _tag_provenance(path: str) -> tuple[list[dict], dict]:
    """playNano's provenance from private tag 65000 (its OME-TIFFs carry nothing else)."""
    import tifffile

    try:
        with open_tiff(path) as tf:
            tag = tf.pages.first.tags.get(TAG_PROVENANCE)
            if tag is None or tag.count > MAX_TAG_BYTES:
                return [], {}
            raw = tag.value
        obj = json.loads(raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else str(raw))
    except (ValueError, UnicodeDecodeError, tifffile.TiffFileError):
        return [], {}
    return provenance.from_playnano(obj) if isinstance(obj, dict) else ([], {})


def _epoch_ms(text: str | None) -> float | None:
    """ms since the Unix epoch for an ISO 8601 date with a time zone (None without one)."""
    import datetime as dt

    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.timestamp() * 1e3 if when.tzinfo is not None else None


def layout(path: str, images: list[ET.Element], series: int, the_set: Any = None, root: ET.Element | None = None) -> dict[str, Any]:
    """Axes, shape and planes of an OME series (tifffile's reading of the OME-XML, or
    ``the_set``'s for a multi-file set, :mod:`.sets`), its dim names and sizes, and its
    channel names."""
    import tifffile

    if the_set is not None:
        found = the_set.layout(series)
        return _described(path, images, series, found["axes"], found["shape"], found["planes"], found["page_axes"], found["dtype"])

    try:
        # _multifile=False: tifffile never opens files an OME-XML names (xafm's sets do, checked)
        with open_tiff(path) as tf:
            fast = _uniform_layout(tf, path, root, images, series)
            if fast is not None:  # pages found without tifffile's series reading every one
                found = _described(path, images, series, *fast[:5])
                found["base"] = fast[5]
                return found
            if len(tf.series) < 1:
                raise CorruptFileError(path, "OME-XML describes no image")
            if not isinstance(series, (int, np.integer)) or not 0 <= series < len(tf.series):
                raise FormatError(f"{path}: no OME image {series!r}; the file holds {len(tf.series)} (series=0..{len(tf.series) - 1})")
            s = tf.series[series]
            axes, shape, planes, page_axes = series_planes(path, s)
            dtype = np.dtype(s.dtype)
    except (tifffile.TiffFileError, ValueError, struct.error) as exc:
        if isinstance(exc, FormatError):
            raise
        raise CorruptFileError(path, f"not a readable OME-TIFF: {exc}") from None
    return _described(path, images, series, axes, shape, planes, page_axes, dtype)


def _uniform_layout(tf: Any, path: str, root: ET.Element | None, images: list[ET.Element], series: int) -> tuple[str, tuple[int, ...], list, str, np.dtype, LazyArray] | None:
    """Axes, shape, planes (none listed), page axes, dtype and lazy planes of OME image
    ``series`` as tifffile's OME series gives them, for the plain files whose pages
    :func:`.pages.image_runs` finds uniform and contiguous: grayscale images, each one run
    of pages from page 0, of the size and pixel type the OME-XML says, no modulo
    annotations. None for any other file (tifffile's series then)."""
    if root is None or not isinstance(series, (int, np.integer)) or not 0 <= series < len(images):
        return None
    if root.find(f".//{q('XMLAnnotation')}") is not None or tf.is_imagej:
        return None  # modulo dims (an XMLAnnotation), ImageJ's own hyperstack: tifffile's
    pix = images[series].find(q("Pixels"))
    if pix is None:
        return None
    order = pix.get("DimensionOrder", "")
    try:
        size = {d: int(pix.get(f"Size{d}", "")) for d in "XYZCT"}
    except ValueError:
        return None
    channels = pix.findall(q("Channel"))
    if len(order) != 5 or order[:2] != "XY" or sorted(order[2:]) != ["C", "T", "Z"] or min(size.values()) < 1:
        return None
    if any(c.get("SamplesPerPixel", "1") != "1" for c in channels) or len(channels) not in (0, size["C"]):
        return None
    runs = image_runs(tf, path, images)
    if runs is None:
        return None
    run = runs[series]
    lead = order[2:][::-1]  # slowest first, as tifffile names them
    lead_shape = tuple(size[d] for d in lead)
    if run.n != size["Z"] * size["C"] * size["T"] or run.shape != (size["Y"], size["X"]):
        return None
    dtype = run.dtype.newbyteorder("=")
    if OME_TYPES.get(dtype) != pix.get("Type"):
        return None
    frames = RawFramesArray(path, offset=run.data_offset, n_frames=run.n, frame_shape=run.shape, raw_dtype=run.dtype)
    base = WithSamples(Reshaped(frames, lead_shape, tuple(range(len(lead)))))
    return lead + "YXS", lead_shape + run.shape + (1,), [], "YXS", dtype, base


def _described(path: str, images: list[ET.Element], series: int, axes: str, shape: tuple[int, ...], planes: list, page_axes: str, dtype: np.dtype) -> dict[str, Any]:
    if dtype.kind not in "iuf":
        raise CorruptFileError(path, f"OME pixel type {dtype} is not a real number type")
    image = images[series] if series < len(images) else images[0]
    pix = image.find(q("Pixels"))
    if pix is None:
        raise CorruptFileError(path, "OME Image has no Pixels element")
    dims = tuple(AXIS_NAMES.get(a, f"dim_{a.lower()}") for a in axes)
    sizes = dict(zip(dims, shape))
    # channel names: OME Channel elements, padded to the C size
    n_c = sizes.get("channel", 1)
    chan_els = pix.findall(q("Channel"))
    names = [(c.get("Name") or f"C{j}") for j, c in enumerate(chan_els[:n_c])]
    names += [f"C{j}" for j in range(len(names), n_c)]
    return {"axes": axes, "shape": shape, "planes": planes, "page_axes": page_axes, "dtype": dtype, "image": image,
            "pix": pix, "dims": dims, "sizes": sizes, "names": names, "chan_els": chan_els}


def read_foreign(path: str, root: ET.Element, images: list[ET.Element], *, channel: str | None, series: int, the_set: Any = None) -> xr.Dataset:
    """Another tool's OME-TIFF (or multi-file set, ``the_set``), OME Image ``series``, with its dims (lazy)."""
    lay = layout(path, images, series, the_set, root)
    axes, shape, planes, page_axes, dtype = lay["axes"], lay["shape"], lay["planes"], lay["page_axes"], lay["dtype"]
    image, pix, names, chan_els = lay["image"], lay["pix"], lay["names"], lay["chan_els"]
    base_dims, sizes = lay["dims"], lay["sizes"]
    if any(p is None for p in planes):
        warnings.warn(f"{path}: {sum(p is None for p in planes)} OME planes are missing; read as zeros", XafmWarning, stacklevel=3)
    n_lead = len(axes) - len(page_axes)
    base = lay.get("base") or TiffPlanesArray(path, planes, shape[:n_lead], shape[n_lead:], dtype)
    n_c = sizes.get("channel", 1)
    fixed: dict[str, int] = {}
    if channel is not None:
        if channel not in names:
            raise ChannelError(f"{path}: no channel {channel!r}; available: {names}")
        c_index: int | None = names.index(channel)
    else:
        c_index = 0 if n_c == 1 else None
    if "channel" in sizes and c_index is not None:
        fixed["channel"] = c_index
    for d, n in sizes.items():
        if n == 1 and d not in ("time", "y", "x", "channel"):
            fixed[d] = 0
    out_dims = model.dim_order([d for d in base_dims if d not in fixed] + ([] if "time" in base_dims else ["time"]))
    data = DimView(base, base_dims, tuple(out_dims), fixed)

    # physical sizes (nm); without them one pixel is 1 nm, with a warning
    size = pixel_size_nm(path, pix)
    if size is None:
        warnings.warn(f"{path}: OME-XML gives no physical pixel size; using 1 nm per pixel", XafmWarning, stacklevel=3)
    dy, dx = size or (1.0, 1.0)

    # times: DeltaT of the first plane of each T (at the selected channel), else TimeIncrement
    n_t = sizes.get("time", 1)
    want_c = c_index or 0
    table = omexml.planes(pix)
    # where the image lies: the one position all its planes state (see omexml.origin_of_rows)
    origin = omexml.origin_of_rows(path, table, omexml.plane_rows(path, table, n_t, want_c)) if table.n >= n_t else None
    deltas = omexml.plane_times(path, table, n_t, channel=want_c)
    recorded = None
    if deltas is not None:
        recorded = deltas
        times, _ = model.times_or_index(path, recorded - recorded[0], n_t)
    else:
        inc = time_s(path, pix.get("TimeIncrement"), pix.get("TimeIncrementUnit"))
        times = np.arange(n_t, dtype=np.float64) * (inc if inc and np.isfinite(inc) and inc > 0 else 1.0)
    start_ms = _epoch_ms(image.findtext(q("AcquisitionDate")))
    frame_metadata: dict[str, np.ndarray] | None = None  # columns, one value per frame
    if recorded is not None or start_ms is not None:
        frame_metadata = {}
        if recorded is not None:
            frame_metadata["delta_t_s"] = np.asarray(recorded, dtype=np.float64)
        if start_ms is not None:
            frame_metadata["start_epoch_ms"] = start_ms + 1e3 * np.asarray(recorded if recorded is not None else times, dtype=np.float64)

    coords: dict[str, xr.Variable] = {}
    if "channel" in out_dims:
        coords["channel"] = model.variable(("channel",), np.array(names), index=True)
    if "z" in out_dims:
        dz = length_nm(path, pix.get("PhysicalSizeZ"), pix.get("PhysicalSizeZUnit"))
        coords["z"] = (
            model.variable(("z",), np.arange(sizes["z"], dtype=np.float64) * dz, {"units": "nm"}, index=True)
            if dz
            else model.variable(("z",), np.arange(sizes["z"]), {"long_name": "z index"}, index=True)
        )
    for d in out_dims:
        if d not in coords and d not in conventions.DIMS:
            coords[d] = model.variable((d,), np.arange(sizes[d]), index=True)
    acquisition = {
        "format": "OME-TIFF",
        "creator": root.get("Creator"),
        "image": series,
        "image_name": image.get("Name"),
        "acquisition_date": image.findtext(q("AcquisitionDate")),
        "pixels": dict(pix.attrib),
        "channels": [dict(c.attrib) for c in chan_els],
        "tiff_axes": axes,
        "tiff_shape": list(shape),
    }
    if the_set is not None:  # a multi-file set: where its document is, how many files it spans
        acquisition["ome_set"] = {"document": the_set.xml_path, "member_files": len(the_set.members)}
    if "channel" in out_dims:
        name = conventions.MULTI_CHANNEL_NAME
    else:
        name = conventions.safe_channel(names[c_index or 0])
    earlier, pn_acquisition = _tag_provenance(path)
    if pn_acquisition:
        acquisition["playnano_acquisition"] = pn_acquisition
    recs = earlier + [provenance.make_record("read", path=path, format=NAME, reader=READER, channel=channel, series=int(series))]
    return model.assemble(
        data,
        dims=tuple(out_dims),
        channel=name,
        units="",
        pixel_size_nm=(dy, dx),
        origin_nm=origin,
        times=times,
        coords=coords,
        frame_metadata=frame_metadata,
        attrs={conventions.ACQUISITION_ATTR: conventions.json_text(acquisition)},
        provenance=recs,
    )
