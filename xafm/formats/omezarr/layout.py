"""Where things are in a store xafm writes: the format's name, the groups of masks and
layers, the node keys of masks and layers, and the key of xafm's own attributes.

Node keys are made to be safe wherever a store is opened: in a URL (served over HTTP a
``%`` would not be escaped again by the client, and the request would 404), on object
stores and on file systems that ignore case (macOS, Windows) or trailing dots (Windows).
The user's names stay in the ``xafm`` attributes (name -> path) and come back on reading.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable

from ...exceptions import FormatError

#: The format's name in the format table and in provenance records.
NAME = "zarr"
#: The group attribute beside the NGFF metadata that holds xafm's own (docs/formats.md).
XAFM_KEY = "xafm"
#: Version of the layout of :data:`XAFM_KEY`; a store without it is read as another tool's.
FORMAT_VERSION = 1
#: The NGFF labels group (one label image per mask) and xafm's group of kept layers.
LABELS, LAYERS = "labels", "layers"

#: A name kept as its own key: lower-case ASCII letters, digits, ``.``, ``_``, ``-``; a
#: letter or digit first, no ``.`` last, no ``--`` (which only a hashed key has), <= 64.
_PLAIN = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9_-])?")
#: Names Windows reserves for devices (also with an extension: ``con.txt``).
_DEVICES = frozenset({"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))})
#: Longest readable part of a hashed key, and the hex digits of its hash.
SLUG_CHARS, HASH_CHARS = 40, 8


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]


def node_name(name: str) -> str:
    """A mask/layer name as its node key: safe in URLs and object stores, stable, and
    unique (also where case is ignored).

    A plain name (:data:`_PLAIN`) is its own key. Any other name becomes a readable part
    (ASCII letters, digits, ``.``, ``-``; other runs ``_``) plus ``--`` and 8 hex digits of
    the SHA-256 of the name: ``"a b"`` -> ``"a_b--c8687a08"``, while ``"a_b"`` stays
    ``"a_b"``. Keys hold only ASCII letters, digits, ``-``, ``_``, ``.``, start with a
    letter or digit (never ``.``, ``..`` or ``__``) and are at most 50 characters.
    """
    if _PLAIN.fullmatch(name) and "--" not in name and name.split(".", 1)[0] not in _DEVICES:
        return name
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", ascii_name)
    slug = re.sub(r"-{2,}", "-", slug).strip("._-")[:SLUG_CHARS].rstrip("._-")
    return f"{slug or 'n'}--{_digest(name)}"


def node_paths(group: str, names: Iterable[str], where: object) -> dict[str, str]:
    """``name -> "group/key"`` for the masks or layers ``names``; a FormatError naming
    ``where`` if two keys coincide (ignoring case): two hashes equal in 8 hex digits."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name in names:
        key = node_name(name)
        other = seen.setdefault(key.lower(), name)
        if other != name:
            kind = "masks" if group == LABELS else group
            raise FormatError(f"{where}: the {kind} {other!r} and {name!r} would share the node {key!r}; rename one")
        out[name] = join(group, key)
    return out


def join(*parts: str) -> str:
    """A path inside the store from its parts, the empty ones left out."""
    return "/".join(p for p in parts if p)
