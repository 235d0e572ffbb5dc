"""The contract between xafm and its formats: what a format module declares about itself,
once, and the checks every declaration passes.

A format module (built in, or a third-party package registered through the
``xafm.formats`` entry point group) ends with::

    FORMAT = Format(
        name="asd",
        description="RIBM / Kanazawa high-speed AFM video",
        suffixes=(".asd",),
        lazy=True,
        identify=identify,    # identify(probe) -> bool: is this one of my files? (content)
        read=read,            # read(path, *, channel=None, <options>) -> xr.Dataset (lazy)
        channels=channels,    # channels(path) -> list[str]
    )

and writers add ``write=write`` (``write(da, path, *, overwrite=False, <options>)``).
The format table (:mod:`xafm.registry`) is built from these declarations and nothing
else. Options are the keyword-only parameters of ``read`` and ``write``: their
signatures are the one place a format says what it accepts, so the registry can refuse
a misspelt option, the xarray engine can declare its parameters, and the ``.afm``
accessor can show the writer's own signature.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

from ..exceptions import FormatError, UnknownOptionError
from . import sources
from .paths import open_regular

#: Bytes a content check sees of a file.
HEAD_BYTES = 4096
#: Largest metadata member of a folder format a content check reads (e.g. ``zarr.json``).
MEMBER_BYTES = 2**20


class Probe:
    """What a content check looks at: the path, and the first bytes of a file, read once
    for every format that is asked.

    ``path`` may be a URL (:mod:`.sources`): then whether it is an object or a prefix
    ("folder") costs one request to the store, the first bytes one ranged GET of
    :data:`HEAD_BYTES`, and a folder member one GET; a store that cannot be reached is
    simply nothing any format confirms.
    """

    def __init__(self, path: str | os.PathLike[str], *, info: dict[str, Any] | None = None):
        self.path = sources.local_path(path)
        self.is_url = sources.is_url(self.path)
        if info is not None:  # what the store already said of the URL (sources.info)
            self.__dict__["_remote_info"] = info

    @cached_property
    def _remote_info(self) -> dict[str, Any] | None:
        try:
            return sources.info(self.path)
        except OSError:  # missing, refused, unreachable: nothing to confirm
            return None

    @cached_property
    def is_dir(self) -> bool:
        if self.is_url:
            info = self._remote_info
            return bool(info) and info.get("type") == "directory"  # type: ignore[union-attr]
        return os.path.isdir(self.path)

    @cached_property
    def is_file(self) -> bool:
        if self.is_url:
            info = self._remote_info
            return bool(info) and info.get("type") == "file"  # type: ignore[union-attr]
        return os.path.isfile(self.path)

    @cached_property
    def head(self) -> bytes:
        """The first :data:`HEAD_BYTES` of a regular file; ``b""`` for anything else."""
        if not self.is_file:
            return b""
        try:
            if self.is_url:
                return sources.head(self.path, HEAD_BYTES)
            with open_regular(self.path) as fh:  # never waits on a FIFO put in its place
                return fh.read(HEAD_BYTES)
        except OSError:  # SpecialFileError included: not a file any format reads
            return b""

    def member(self, *parts: str) -> bytes | None:
        """The bytes of a small file inside a folder (None if absent or too large)."""
        if not self.is_dir:
            return None
        p = sources.join(self.path, *parts)
        try:
            if self.is_url:
                found = sources.info(p)
                if found.get("type") != "file" or int(found.get("size") or 0) > MEMBER_BYTES:
                    return None
                return sources.head(p, MEMBER_BYTES)
            if not os.path.isfile(p) or os.path.getsize(p) > MEMBER_BYTES:
                return None
            with open_regular(p) as fh:
                return fh.read(MEMBER_BYTES)
        except OSError:
            return None


@dataclass(frozen=True)
class Format:
    """What a format module declares about itself; the format table is built from these.

    ``suffixes`` are lower-case endings of the file name (``".ome.tif"``); ``patterns``
    are regular expressions searched in the lower-case name, for names suffixes cannot
    express (Nanoscope's ``.001``). ``folder`` says the format is a folder, ``lazy`` that
    reading defers the pixel data until it is asked for. ``module`` is filled in by the
    registry with the declaring module's full path.
    """

    name: str
    description: str
    suffixes: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    folder: bool = False
    lazy: bool = False
    identify: Callable[[Probe], bool] | None = None
    read: Callable[..., Any] | None = None
    channels: Callable[[str], list[str]] | None = None
    write: Callable[..., Path | str] | None = None  # str: a URL written
    module: str = ""

    @property
    def can_read(self) -> bool:
        return self.read is not None

    @property
    def can_write(self) -> bool:
        return self.write is not None

    def name_match(self, filename: str) -> int:
        """How well a (lower-case) file name fits: the length of the longest matching
        suffix, 1 for a pattern, 0 for none."""
        best = self.suffix_match(filename)
        if not best and any(re.search(p, filename) for p in self.patterns):
            best = 1
        return best

    def suffix_match(self, filename: str) -> int:
        """The length of the longest of the format's suffixes that ends ``filename`` (0: none)."""
        return max((len(s) for s in self.suffixes if filename.endswith(s)), default=0)

    def read_options(self) -> dict[str, inspect.Parameter]:
        return options_of(self.read) if self.read is not None else {}

    def write_options(self) -> dict[str, inspect.Parameter]:
        return options_of(self.write) if self.write is not None else {}

    def problems(self) -> list[str]:
        """What keeps this declaration from meeting the contract (empty when it does)."""
        out = []
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", self.name or ""):
            out.append(f"name {self.name!r} must be lower-case letters, digits, '-' or '_'")
        if not self.description:
            out.append("no description")
        for s in self.suffixes:
            if not (isinstance(s, str) and s and s == s.lower() and not s.startswith("/")):
                out.append(f"suffix {s!r} must be a non-empty lower-case file name ending")
        for p in self.patterns:
            try:
                re.compile(p)
            except re.error as exc:
                out.append(f"pattern {p!r} does not compile: {exc}")
        if not (self.can_read or self.can_write):
            out.append("neither reads nor writes")
        if self.can_read:
            if self.identify is None:
                out.append("reads but has no content check (identify)")
            if self.channels is None:
                out.append("reads but cannot list channels (channels)")
            if not (self.suffixes or self.patterns or self.folder):
                out.append("reads but declares no suffix, pattern or folder")
            out += [f"read: {p}" for p in _signature_problems(self.read, positional=1, required=("channel",))]
        if self.can_write:
            if not self.suffixes:
                out.append("writes but declares no suffix to name its outputs")
            out += [f"write: {p}" for p in _signature_problems(self.write, positional=2, required=("overwrite",))]
        return out


def _signature_problems(func: Any, *, positional: int, required: tuple[str, ...]) -> list[str]:
    if isinstance(func, Deferred):
        return []  # checked where it is declared (tests/test_registry.py), not imported to check here
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError) as exc:
        return [f"no inspectable signature ({exc})"]
    out = []
    kinds = [p.kind for p in params]
    if inspect.Parameter.VAR_KEYWORD in kinds or inspect.Parameter.VAR_POSITIONAL in kinds:
        out.append("takes *args or **kwargs; options must be declared keyword-only parameters")
    lead = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(lead) != positional:
        out.append(f"must take {positional} positional parameter(s), takes {len(lead)}")
    keyword = {p.name: p for p in params if p.kind is p.KEYWORD_ONLY}
    for p in keyword.values():
        if p.default is p.empty:
            out.append(f"option {p.name!r} has no default")
    for name in required:
        if name not in keyword:
            out.append(f"has no {name!r} option")
    return out


def declarations(module: ModuleType) -> list[Format]:
    """The formats a module declares (its ``FORMAT``, or a sequence ``FORMATS``), with
    ``module`` filled in."""
    found = getattr(module, "FORMATS", None)
    if found is None:
        found = [getattr(module, "FORMAT", None)]
    out = []
    for fmt in found:
        if not isinstance(fmt, Format):
            raise FormatError(f"{module.__name__} declares no xafm Format (FORMAT or FORMATS), found {fmt!r:.60}")
        out.append(fmt if fmt.module else replace(fmt, module=module.__name__))
    return out


#: The callables a :class:`Format` declares, by field name.
ROLES = ("identify", "read", "channels", "write")


class Deferred:
    """A format's ``identify``, ``read``, ``channels`` or ``write`` whose module is
    imported on first use: the format table lists xafm's own formats without importing
    their modules (``xafm/_builtin_formats.py``, generated by ``python -m
    xafm.builtin_index``), so a first open imports only the one
    that reads the file.

    The function is the one the module declares for that format name (not an attribute
    guessed by name); ``inspect.signature`` sees its parameters through ``__wrapped__``,
    and a pickled copy imports the module again where it is unpickled.
    """

    __slots__ = ("_func", "format", "module", "options", "role")

    def __init__(self, module: str, format: str, role: str, *, options: tuple[str, ...] | None = None):
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        self.module, self.format, self.role = module, format, role
        #: The option names the index recorded for a reader or writer (known without the import).
        self.options = options
        self._func: Callable[..., Any] | None = None

    def resolve(self) -> Callable[..., Any]:
        """The declared function (its module imported the first time)."""
        if self._func is None:
            found = [f for f in declarations(importlib.import_module(self.module)) if f.name == self.format]
            func = getattr(found[0], self.role) if found else None
            if func is None:
                raise FormatError(
                    f"{self.module} no longer declares the {self.role} of format {self.format!r} that xafm's index of "
                    "its formats names: run `python -m xafm.builtin_index`"
                )
            self._func = func
        return self._func

    @property
    def is_resolved(self) -> bool:
        """Whether the module has been imported for this function (without importing it)."""
        return self._func is not None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    @property
    def __wrapped__(self) -> Callable[..., Any]:
        return self.resolve()

    @property
    def __name__(self) -> str:
        return str(getattr(self.resolve(), "__name__", self.role))

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return self.resolve().__doc__

    def __reduce__(self) -> tuple[Any, ...]:
        return (Deferred, (self.module, self.format, self.role), {"options": self.options})

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.options = state["options"]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Deferred):
            return NotImplemented
        return (self.module, self.format, self.role) == (other.module, other.format, other.role)

    def __hash__(self) -> int:
        return hash((self.module, self.format, self.role))

    def __repr__(self) -> str:
        return f"<deferred {self.role} of format {self.format!r} in {self.module}>"


def resolved(func: Callable[..., Any]) -> Callable[..., Any]:
    """The function itself behind a :class:`Deferred` (its module imported), else ``func``."""
    return func.resolve() if isinstance(func, Deferred) else func


def options_of(func: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The keyword-only parameters of a reader or writer: the options it declares."""
    return {p.name: p for p in inspect.signature(func).parameters.values() if p.kind is p.KEYWORD_ONLY}


def undeclared(valid: Iterable[str], given: Iterable[str], noun: str = "option") -> str | None:
    """``"no option 'x' (did you mean 'y'?); its options are: ..."`` for the names in
    ``given`` that ``valid`` lacks (the closest valid one suggested for a typo); None when
    every name is declared. One wording for reader and writer options and step parameters."""
    valid = list(valid)
    unknown = [k for k in given if k not in valid]
    if not unknown:
        return None
    hints = []
    for k in unknown:
        close = difflib.get_close_matches(k, valid, n=1)
        hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"no {noun} {', '.join(hints)}; its {noun}s are: {', '.join(valid) or 'none'}"


def check_options(func: Callable[..., Any], options: Mapping[str, Any], what: str) -> None:
    """Raise :class:`UnknownOptionError` for an option ``func`` does not declare, naming
    the ones it does (and the closest, for a typo)."""
    problem = undeclared(options_of(func), options)
    if problem:
        raise UnknownOptionError(f"{what} has {problem}")
