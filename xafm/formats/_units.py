"""Unit conversions shared by the readers."""

from __future__ import annotations

_SI_PREFIX = {
    "Y": 1e24, "Z": 1e21, "E": 1e18, "P": 1e15, "T": 1e12, "G": 1e9, "M": 1e6, "k": 1e3, "h": 1e2,
    "da": 1e1, "": 1.0, "d": 1e-1, "c": 1e-2, "m": 1e-3, "u": 1e-6, "\u00b5": 1e-6, "\u03bc": 1e-6,
    "n": 1e-9, "p": 1e-12, "f": 1e-15, "a": 1e-18, "z": 1e-21, "y": 1e-24,
}


def length_unit_nm(unit: str | None) -> float | None:
    """nm per unit for a length unit (``m`` with an SI prefix, ``Å``); None otherwise."""
    if unit is None:
        return None
    u = str(unit).strip()
    if u in ("\u00c5", "\u212b", "Ang", "angstrom"):
        return 0.1
    if not u.endswith("m"):
        return None
    prefix = u[:-1]
    if prefix in _SI_PREFIX:
        return _SI_PREFIX[prefix] * 1e9
    return None
