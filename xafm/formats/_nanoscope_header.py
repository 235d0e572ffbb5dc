"""The Nanoscope text header: sections, values, sizes, dates and the Z scale chain.

Split from :mod:`xafm.formats.nanoscope`, which decides what the header means for an
image; this module only reads it. The layout is in ``docs/formats.md`` (Bruker Nanoscope).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import CorruptFileError, NotAnImageError
from ._text import read_until
from ._units import _SI_PREFIX, length_unit_nm

#: First bytes of a Nanoscope file: images (and electrochemistry images), force curves,
#: and the rare ASCII-data variant.
MAGICS = (b"\\*File list", b"\\*EC File list", b"\\*Force file list", b"?*File list")
END = b"\\*File list end"
#: Real headers are 8-80 kB; a file whose header does not end within this is refused.
MAX_HEADER = 4 * 2**20
IMAGE_SECTIONS = ("Ciao image list", "AFM image list", "STM image list", "NCAFM image list", "Image list")
FORCE_SECTIONS = ("Ciao force image list", "Ciao force list")
#: Where a soft scale (``@Sens. Zsens``) is looked up, in this order.
SCALE_SECTIONS = ("Scanner list", "Microscope list", "Ciao scan list")
FORCE_CURVES = "this is a force-curve file (Nanoscope force curves or force volume); xafm reads images"
_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_VALUE_RE = re.compile(r"^\s*([VCS])(?:\s+\[([^\]]*)\])?(?:\s+\(([^)]*)\))?\s*(.*?)\s*$")
#: Units a value is given in, as (factor to the unit xafm uses, that unit): SI-prefixed
#: volts, newtons, pascals, joules, electronvolts, amperes and hertz become the plain
#: unit; lengths become nm (:func:`unit_in`).
_BASE_UNITS = ("V", "N", "Pa", "J", "eV", "A", "Hz")


@dataclass
class Section:
    name: str
    values: dict[str, str] = field(default_factory=dict)
    folded: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, value: str) -> None:
        self.values.setdefault(key, value)
        self.folded.setdefault(key.lower(), value)

    def get(self, key: str) -> str | None:
        """Keys change case between versions (``Scan size`` / ``Scan Size``)."""
        return self.folded.get(key.lower())


@dataclass
class Header:
    sections: list[Section]
    end: int  # byte offset just past ``\*File list end``
    size: int  # file size

    def first(self, *names: str) -> list[Section]:
        return [s for s in self.sections if s.name in names]

    def lookup(self, key: str, prefer: tuple[str, ...] = ()) -> str | None:
        """A key's value from the preferred sections first, then any non-image section."""
        order = self.first(*prefer) + [s for s in self.sections if s.name not in prefer and s.name not in IMAGE_SECTIONS]
        for sec in order:
            if sec.get(key) is not None:
                return sec.get(key)
        return None


def parse_header(path: str) -> Header:
    """Read the header (never the data) into sections; refuse what is not an image file."""
    head, end, size = read_until(path, END, limit=MAX_HEADER, starts=MAGICS)
    if head.startswith(b"\\*Force file list"):
        raise NotAnImageError(path, FORCE_CURVES)
    if head.startswith(b"?*File list"):
        raise CorruptFileError(path, "Nanoscope files with ASCII data ('?*File list') are not supported")
    if not head.startswith(MAGICS):
        raise CorruptFileError(path, "not a Nanoscope file (no '\\*File list' at the start)")
    if end < 0:
        what = "the file ends" if size <= MAX_HEADER else f"{MAX_HEADER} bytes"
        raise CorruptFileError(path, f"header end '\\*File list end' not found before {what} (truncated header?)")
    sections: list[Section] = []
    for raw in re.split(r"\r\n|\n|\r", head[:end].decode("latin-1")):
        if raw.startswith("\\*"):
            sections.append(Section(raw[2:].strip()))
            continue
        if not raw.startswith("\\"):
            continue  # blank or stray text (e.g. a multi-line note): carries no key
        if not sections:
            raise CorruptFileError(path, "header line before the first section")
        body = raw[1:]
        start = 3 if re.match(r"@\d+:", body) else 0
        m = re.compile(r":(\s|$)").search(body, start)
        if m is None:
            continue  # a line without a value: nothing to keep
        key, value = body[: m.start()].strip(), body[m.end():].strip()
        sections[-1].add(key, value)
    return Header(sections, end + len(END), size)


# --------------------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------------------
def value(path: str, key: str, text: str | None) -> tuple[str | None, float, str]:
    """``V [soft] (hard scale) value unit`` -> (soft scale name, value, unit)."""
    if text is None:
        raise CorruptFileError(path, f"header value {key!r} is missing")
    m = _VALUE_RE.match(text)
    if m is None or m.group(1) != "V":
        raise CorruptFileError(path, f"header value {key}: {text!r} is not of the form 'V [soft] (hard) value unit'")
    rest = m.group(4).split(None, 1)
    try:
        number = float(rest[0])
    except (ValueError, IndexError):
        raise CorruptFileError(path, f"header value {key}: {text!r} has no number") from None
    if not math.isfinite(number):
        raise CorruptFileError(path, f"header value {key}: {text!r} is not finite")
    soft = (m.group(2) or "").strip() or None
    return soft, number, rest[1].strip() if len(rest) > 1 else ""


def integer(path: str, sec: Section, key: str, default: int | None = None) -> int:
    text = sec.get(key)
    if text is None:
        if default is not None:
            return default
        raise CorruptFileError(path, f"image section lacks {key!r}")
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        raise CorruptFileError(path, f"{key}: {text!r} is not an integer") from None


def number(text: str | None) -> float | None:
    try:
        v = float((text or "").split()[0])
    except (ValueError, IndexError):
        return None
    return v if math.isfinite(v) else None


def scan_size(path: str, text: str | None) -> tuple[float, float]:
    """``Scan Size: 15 15 ~m`` (x then y; old files give one number) -> (x, y) in nm."""
    parts = (text or "").split()
    nums: list[float] = []
    for p in parts[:2]:
        try:
            nums.append(float(p))
        except ValueError:
            break
    unit = parts[len(nums)] if len(parts) > len(nums) else None
    factor = length_unit_nm(clean_unit(unit)) if unit else None
    if not nums or factor is None:
        raise CorruptFileError(path, f"Scan size {text!r} is not 'x [y] unit' with a length unit")
    sx = nums[0]
    sy = nums[1] if len(nums) > 1 else sx
    if not all(math.isfinite(v) and v > 0 for v in (sx, sy)):
        raise CorruptFileError(path, f"Scan size {text!r} must be positive")
    return sx * factor, sy * factor


def epoch_ms(text: str | None) -> float | None:
    """``12:34:38 PM Tue Jul 30 2019``, read as UTC (the header carries no time zone)."""
    m = re.match(
        r"\s*(\d{1,2}):(\d{2}):(\d{2})\s*([AaPp][Mm])?\s+(?:[A-Za-z]+\s+)?([A-Za-z]{3})[A-Za-z]*\s+(\d{1,2})\s+(\d{4})",
        text or "",
    )
    if not m:
        return None
    hour, minute, sec = int(m.group(1)), int(m.group(2)), int(m.group(3))
    ampm = (m.group(4) or "").lower()
    if ampm:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    month = _MONTHS.get(m.group(5).lower())
    if month is None:
        return None
    try:
        stamp = _dt.datetime(int(m.group(7)), month, int(m.group(6)), hour, minute, sec, tzinfo=_dt.UTC)
    except ValueError:
        return None
    return stamp.timestamp() * 1000.0


# --------------------------------------------------------------------------------------
# units and the Z scale chain
# --------------------------------------------------------------------------------------
def clean_unit(unit: str | None) -> str:
    """A unit as written (``~m``, ``º``, ``nm±``) in plain text (``µm``, ``deg``, ``nm``)."""
    u = (unit or "").strip().replace("~", "\u00b5").replace("\xba", "deg").replace("\u00b0", "deg")
    return "".join(c for c in u if c.isalnum() or c in "()*/^._-\u00b5").strip()


def unit_in(unit: str) -> tuple[float, str]:
    """(factor, unit) that expresses a value in ``unit`` the way xafm reports it: lengths in
    nm, SI-prefixed V, N, Pa, J, eV, A, Hz in the plain unit, anything else as written."""
    u = clean_unit(unit)
    nm = length_unit_nm(u)
    if nm is not None:
        return nm, "nm"
    for base in sorted(_BASE_UNITS, key=len, reverse=True):
        if u.endswith(base) and u[: -len(base)] in _SI_PREFIX:
            return _SI_PREFIX[u[: -len(base)]], base
    return 1.0, u


def z_scale(path: str, header: Header, sec: Section, group: str, qbpp: int) -> tuple[float, str, dict[str, Any]]:
    """(value per stored integer, unit, details) from ``@2:Z scale`` and its soft scale.

    ``@2:Z scale: V [Sens. Zsens] (0.0057 V/LSB) 379.02 V`` is the hard value (379.02 V
    over the full integer range of ``qbpp`` bytes) and names the soft scale
    ``@Sens. Zsens: V 4.2176 nm/V``; the product is in nm. A soft scale with no unit keeps
    the hard unit (``º`` is deg, ``Arb`` stays Arb); without a soft scale the hard value is
    in the hard unit.
    """
    key = f"@{group}:Z scale"
    soft, hard, hard_unit = value(path, key, sec.get(key))
    hard_unit = clean_unit(hard_unit) or "V"
    per_lsb = hard / float(2 ** (8 * qbpp))
    details: dict[str, Any] = {"z_scale": sec.get(key), "scale_bytes_per_pixel": qbpp}
    sens_text = header.lookup(f"@{soft}", prefer=SCALE_SECTIONS) if soft else None
    details["sensitivity"] = sens_text
    if sens_text is None:
        factor, unit = unit_in(hard_unit)
        return per_lsb * factor, unit, details
    _, sens, sens_unit = value(path, f"@{soft}", sens_text)
    top, _, per = clean_unit(sens_unit).partition("/")
    if not top:  # a sensitivity without a unit (uncalibrated) multiplies the hard unit
        if soft == "Sens. Phase" and hard_unit == "V":
            return per_lsb * sens, "deg", details
        factor, unit = unit_in(hard_unit)
        return per_lsb * sens * factor, unit, details
    hard_factor, hard_base = unit_in(hard_unit)
    per_factor, per_base = unit_in(per) if per else (hard_factor, hard_base)
    # the hard value in the unit the sensitivity divides by (mV against nm/V: 1e-3)
    convert = hard_factor / per_factor if per_base == hard_base else 1.0
    details["unit_mismatch"] = None if per_base == hard_base or not per else f"{hard_unit} against {sens_unit}"
    factor, unit = unit_in(top)
    return per_lsb * convert * sens * factor, unit, details
