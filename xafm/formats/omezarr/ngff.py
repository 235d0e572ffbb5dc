"""Everything NGFF: the metadata xafm writes (axes, multiscales, omero, labels,
image-label), how the metadata of any NGFF version is read (``ome`` or top-level
attributes, datasets, axes, transforms, units), and the differences between the two
versions xafm writes, in one place.

The versions differ in where the metadata lives and in how the arrays are made:

=====================  ======================================  =====================================
                       NGFF 0.4 on Zarr v2                     NGFF 0.5 on Zarr v3 (the default)
=====================  ======================================  =====================================
group attributes       ``.zattrs``                             ``zarr.json``, under ``attributes``
NGFF content           at the top level of the attributes      under ``ome``
``"version"`` key      in each multiscale, omero, image-label  once, in ``ome``
array compression      numcodecs Blosc lz4 5, byte shuffle     the v3 core ``blosc`` codec, the same
dimension names        none (Zarr v2 has none)                 ``["t", "y", "x"]``
chunk keys             ``/``-separated (NGFF 0.4 requires it)  Zarr v3's default
shards                 not available                           ``shards=`` allowed
=====================  ======================================  =====================================

Each column is one :class:`NgffVersion`; :data:`NGFF` looks them up by version string.
No other module of the package asks which version it writes: they ask the
:class:`NgffVersion` in hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._version import __version__
from ...exceptions import CorruptFileError, FormatError

#: NGFF (UDUNITS-2) unit names in nm and s.
SPACE_NM = {
    "angstrom": 0.1, "attometer": 1e-9, "centimeter": 1e7, "decimeter": 1e8, "exameter": 1e27,
    "femtometer": 1e-6, "foot": 3.048e8, "gigameter": 1e18, "hectometer": 1e11, "inch": 2.54e7,
    "kilometer": 1e12, "megameter": 1e15, "meter": 1e9, "micrometer": 1e3, "micron": 1e3, "mile": 1.609344e12,
    "millimeter": 1e6, "nanometer": 1.0, "parsec": 3.0856776e25, "petameter": 1e24, "picometer": 1e-3,
    "terameter": 1e21, "yard": 9.144e8, "yoctometer": 1e-15, "yottameter": 1e33, "zeptometer": 1e-12,
    "zettameter": 1e30,
}
TIME_S = {
    "attosecond": 1e-18, "centisecond": 1e-2, "day": 86400.0, "decisecond": 0.1, "exasecond": 1e18,
    "femtosecond": 1e-15, "gigasecond": 1e9, "hectosecond": 1e2, "hour": 3600.0, "kilosecond": 1e3,
    "megasecond": 1e6, "microsecond": 1e-6, "millisecond": 1e-3, "minute": 60.0, "nanosecond": 1e-9,
    "petasecond": 1e15, "picosecond": 1e-12, "second": 1.0, "terasecond": 1e12, "yoctosecond": 1e-24,
    "yottasecond": 1e24, "zeptosecond": 1e-21, "zettasecond": 1e21,
}

#: The axes of every image xafm writes: names (also the v3 ``dimension_names``), types, units.
AXES = (("t", "time", "second"), ("y", "space", "nanometer"), ("x", "space", "nanometer"))
AXIS_NAMES = tuple(name for name, _, _ in AXES)
#: Colour of label value 1 (a masked pixel) in the image-label metadata of every mask.
MASK_COLOR = [255, 0, 0, 128]
#: Who wrote the pyramid, in each multiscale's ``metadata`` (the package's public writer).
WRITER = f"{__package__}.write"


# ======================================================================================
# the versions xafm writes
# ======================================================================================
def _blosc_v3() -> Any:
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")


def _blosc_v2() -> Any:
    import numcodecs

    return numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)


@dataclass(frozen=True)
class NgffVersion:
    """One NGFF version xafm writes (and appends to), and what makes it differ from the other."""

    #: The NGFF version string (``"0.4"``, ``"0.5"``).
    version: str
    #: The Zarr format its stores use.
    zarr_format: int
    #: The file in a group's folder that holds its attributes ...
    attrs_file: str
    #: ... and the key they are under in that file (None: the whole file).
    attrs_key: str | None
    #: Attribute keys that make a group an NGFF image (or a wrapper of one) to :func:`identify`.
    marks: tuple[str, ...]
    #: The attribute that holds the NGFF content (None: the attributes themselves).
    ome_key: str | None
    #: The NGFF objects that carry a ``"version"`` key.
    versioned: frozenset[str]
    #: The compressor of every array, made when an array is.
    compressor: Callable[[], Any]
    #: Whether arrays carry ``dimension_names``.
    dimension_names: bool
    #: The chunk key encoding arrays are made with (None: the Zarr format's default).
    chunk_key_encoding: tuple[tuple[str, str], ...] | None
    #: Whether several chunks may be stored in one shard.
    shards: bool

    # ----------------------------------------------------------------------------------
    # metadata
    # ----------------------------------------------------------------------------------
    def tag(self, kind: str, obj: dict[str, Any], *, at_end: bool = False) -> dict[str, Any]:
        """The NGFF object ``obj`` (``"ome"``, ``"multiscales"``, ``"omero"``,
        ``"image-label"``) with the ``"version"`` key if this version puts one in it."""
        if kind not in self.versioned:
            return obj
        return {**obj, "version": self.version} if at_end else {"version": self.version, **obj}

    def group_attrs(self, **content: Any) -> dict[str, Any]:
        """A group's attributes holding the NGFF ``content`` (under ``ome``, or at the top)."""
        if self.ome_key is None:
            return dict(content)
        return {self.ome_key: self.tag(self.ome_key, dict(content))}

    # ----------------------------------------------------------------------------------
    # arrays
    # ----------------------------------------------------------------------------------
    def check_shards(self, shards: Any) -> None:
        """Refuse ``shards`` where this version's Zarr format has none."""
        if shards is not None and not self.shards:
            best = next(v for v in NGFF.values() if v.shards)
            raise FormatError(f"shards need Zarr v{best.zarr_format}: use version={best.version!r}")

    def array_keywords(self, shards: tuple[int, ...] | None) -> dict[str, Any]:
        """The ``create_array`` keywords that differ between the versions."""
        kwargs: dict[str, Any] = {"compressors": self.compressor()}
        if self.dimension_names:
            kwargs["dimension_names"] = list(AXIS_NAMES)
        if self.shards and shards is not None:
            kwargs["shards"] = shards
        if self.chunk_key_encoding is not None:
            kwargs["chunk_key_encoding"] = dict(self.chunk_key_encoding)
        return kwargs

    # ----------------------------------------------------------------------------------
    # content checks
    # ----------------------------------------------------------------------------------
    def attributes_in(self, document: Any) -> Any:
        """The group attributes in the parsed :attr:`attrs_file`."""
        if self.attrs_key is None:
            return document
        return (document.get(self.attrs_key) or {}) if isinstance(document, dict) else None

    def marks_image(self, attrs: Any) -> bool:
        """Whether a group's attributes make it an NGFF image (of any NGFF version)."""
        return isinstance(attrs, dict) and any(k in attrs for k in self.marks)


#: The versions xafm writes, by version string, oldest first.
NGFF: dict[str, NgffVersion] = {
    "0.4": NgffVersion(
        version="0.4",
        zarr_format=2,
        attrs_file=".zattrs",
        attrs_key=None,
        marks=("multiscales", "bioformats2raw.layout"),
        ome_key=None,
        versioned=frozenset({"multiscales", "omero", "image-label"}),
        compressor=_blosc_v2,
        dimension_names=False,
        chunk_key_encoding=(("name", "v2"), ("separator", "/")),
        shards=False,
    ),
    "0.5": NgffVersion(
        version="0.5",
        zarr_format=3,
        attrs_file="zarr.json",
        attrs_key="attributes",
        marks=("ome", "multiscales"),
        ome_key="ome",
        versioned=frozenset({"ome"}),
        compressor=_blosc_v3,
        dimension_names=True,
        chunk_key_encoding=None,
        shards=True,
    ),
}
VERSIONS = tuple(NGFF)
DEFAULT_VERSION = "0.5"
#: The order in which a content check looks for a group's attributes: the newest Zarr
#: format first (a folder with both is read as the newer).
PROBE_ORDER = tuple(sorted(NGFF.values(), key=lambda v: v.zarr_format, reverse=True))


def version_of(version: Any) -> NgffVersion:
    """The :class:`NgffVersion` a writer's ``version=`` names."""
    spec = NGFF.get(str(version))
    if spec is None:
        raise FormatError(f"version must be one of {VERSIONS}, got {str(version)!r}")
    return spec


# ======================================================================================
# writing
# ======================================================================================
def image_axes() -> list[dict[str, str]]:
    """The ``axes`` of every image xafm writes."""
    return [{"name": name, "type": kind, "unit": unit} for name, kind, unit in AXES]


def time_scale(times: np.ndarray) -> float:
    """The NGFF time scale: the median frame interval (1 for one frame)."""
    if times.size > 1:
        step = float(np.median(np.diff(times)))
        if math.isfinite(step) and step > 0:
            return step
    return 1.0


def multiscale(
    ngff: NgffVersion, name: str, levels: int, method: str, times: np.ndarray, pixel: tuple[float, float], origin: tuple[float, float] = (0.0, 0.0)
) -> dict[str, Any]:
    """The multiscale of a (t, y, x) pyramid of ``levels`` levels, 2x down in y and x each.

    Each level's ``translation`` (after its ``scale``, as NGFF requires) puts its first
    pixel where it lies in the stack's coordinates: the stack's ``origin`` (y, x in nm, a
    crop's offset) plus, for a reduced level, the centre of the pixels it was made from.
    """
    dy, dx = pixel
    y0, x0 = origin
    dt = time_scale(times)
    t_origin = float(times[0]) if times.size else 0.0
    datasets = []
    for k in range(levels):
        f = 2**k
        transforms: list[dict[str, Any]] = [{"type": "scale", "scale": [dt, dy * f, dx * f]}]
        shift = 0.0 if method == "nearest" else (f - 1) / 2
        translation = [t_origin, y0 + dy * shift, x0 + dx * shift]
        if any(v != 0 for v in translation):
            transforms.append({"type": "translation", "translation": translation})
        datasets.append({"path": str(k), "coordinateTransformations": transforms})
    ms: dict[str, Any] = {
        "axes": image_axes(),
        "datasets": datasets,
        "name": name,
        "type": method,
        "metadata": {
            "description": f"2x{method} downsampling in y and x per level (time kept)",
            "method": WRITER,
            "version": __version__,
        },
    }
    return ngff.tag("multiscales", ms)


def omero(ngff: NgffVersion, channel: str, window: Mapping[str, float]) -> dict[str, Any]:
    """One grey channel shown through ``window`` (``min``, ``max``, ``start``, ``end``:
    :meth:`.display.Display.omero_window`), active, white on black."""
    content = {
        "channels": [
            {
                "label": channel,
                "color": "FFFFFF",
                "active": True,
                "coefficient": 1.0,
                "family": "linear",
                "inverted": False,
                "window": {k: float(window[k]) for k in ("min", "max", "start", "end")},
            }
        ],
        "rdefs": {"defaultT": 0, "defaultZ": 0, "model": "greyscale"},
    }
    return ngff.tag("omero", content, at_end=True)


def image_label(ngff: NgffVersion) -> dict[str, Any]:
    """The image-label of a mask: value 1 in :data:`MASK_COLOR`, the image two groups up."""
    return ngff.tag("image-label", {"colors": [{"label-value": 1, "rgba": MASK_COLOR}], "source": {"image": "../../"}})


# ======================================================================================
# reading (every NGFF version)
# ======================================================================================
def read_ome(attrs: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """(NGFF content, version) of a group's attributes, for every NGFF version."""
    if isinstance(attrs.get("ome"), Mapping):
        ome = dict(attrs["ome"])
        return ome, str(ome.get("version")) if ome.get("version") is not None else None
    ms = attrs.get("multiscales")
    version = None
    if isinstance(ms, list) and ms and isinstance(ms[0], Mapping):
        version = ms[0].get("version")
    return dict(attrs), str(version) if version is not None else None


def dataset_entries(path: str, ms: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The levels of a multiscale, each with its array ``path``."""
    entries = ms.get("datasets")
    if not isinstance(entries, list) or not entries:
        raise CorruptFileError(path, "multiscales has no datasets")
    out = []
    for d in entries:
        if not isinstance(d, Mapping) or not isinstance(d.get("path"), str):
            raise CorruptFileError(path, f"dataset entry without a path: {d!r:.100}")
        out.append(dict(d))
    return out


def scale_translation(path: str, transforms: Any, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """(scale, translation) of a list of coordinate transformations."""
    scale, translation = np.ones(ndim), np.zeros(ndim)
    for t in transforms or []:
        if not isinstance(t, Mapping):
            continue
        for kind, target in (("scale", scale), ("translation", translation)):
            if t.get("type") == kind and kind in t:
                vals = t[kind]
                if not isinstance(vals, list) or len(vals) != ndim or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                    raise CorruptFileError(path, f"{kind} transform {vals!r:.80} does not match the {ndim} axes")
                if kind == "scale":
                    target *= np.asarray(vals, dtype=np.float64)
                else:
                    target[:] = target * 1 + np.asarray(vals, dtype=np.float64)
    return scale, translation


def axis_info(path: str, ms: Mapping[str, Any], ndim: int) -> list[dict[str, Any]]:
    """Name, type and unit of every axis (by name for NGFF <= 0.3, which had no axes)."""
    axes = ms.get("axes")
    if axes is None:  # NGFF <= 0.3: tczyx, trailing
        names = "tczyx"[5 - ndim:] if ndim <= 5 else None
        if names is None:
            raise CorruptFileError(path, f"{ndim}-D array without axes metadata")
        axes = [{"name": n} for n in names]
    if not isinstance(axes, list) or len(axes) != ndim:
        raise CorruptFileError(path, f"axes metadata lists {len(axes) if isinstance(axes, list) else '?'} axes, the array has {ndim} dims")
    out = []
    for a in axes:
        if isinstance(a, str):
            a = {"name": a}
        if not isinstance(a, Mapping) or not isinstance(a.get("name"), str):
            raise CorruptFileError(path, f"malformed axis {a!r:.80}")
        name = a["name"]
        kind = a.get("type") or {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}.get(name.lower())
        out.append({"name": name, "type": kind, "unit": a.get("unit")})
    return out


def unit_factor(unit: Any, table: dict[str, float]) -> float | None:
    """The factor of an NGFF unit name in :data:`SPACE_NM` or :data:`TIME_S` (None: unknown)."""
    return table.get(str(unit).lower()) if unit is not None else None
