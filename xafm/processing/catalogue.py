"""The processing catalogue: every step declared once, under the name playNano 0.5 gives it.

A step is a function ``step(da, *params) -> DataArray`` decorated with :func:`step`; its
signature is the one place that says which parameters it takes (as a format's reader
signature does for its options), so a pipeline string, a YAML file, the accessor and
``xafm process --list`` all see the same names and defaults. Modules that define steps
are imported by the package, so importing :mod:`xafm.processing` fills the catalogue.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import xarray as xr

from ..core.contract import undeclared
from ..exceptions import StackError, UnknownOptionError

#: What a step does: change values (``filter``), add a mask (``mask``) or change the
#: stack's frames or extent (``edit``).
KINDS = ("filter", "mask", "edit")


@dataclass(frozen=True)
class Step:
    """One catalogue entry: the name, what kind of step, the function and its summary."""

    name: str
    kind: str
    func: Callable[..., xr.DataArray]

    @property
    def description(self) -> str:
        """The first line of the function's docstring."""
        doc = inspect.getdoc(self.func) or ""
        return doc.splitlines()[0] if doc else ""

    def parameters(self) -> dict[str, inspect.Parameter]:
        """The step's parameters (everything after the stack), in signature order."""
        params = list(inspect.signature(self.func).parameters.values())[1:]
        return {p.name: p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


_STEPS: dict[str, Step] = {}


def step(kind: str, name: str | None = None) -> Callable[[Callable[..., xr.DataArray]], Callable[..., xr.DataArray]]:
    """Declare a function as a catalogue step of ``kind`` (its own name unless ``name``)."""
    if kind not in KINDS:
        raise ValueError(f"step kind must be one of {KINDS}, got {kind!r}")

    def declare(func: Callable[..., xr.DataArray]) -> Callable[..., xr.DataArray]:
        key = name or func.__name__
        if key in _STEPS and _STEPS[key].func is not func:
            raise ValueError(f"processing step {key!r} is declared twice ({_STEPS[key].func.__module__}, {func.__module__})")
        _STEPS[key] = Step(key, kind, func)
        return func

    return declare


def catalogue() -> dict[str, Step]:
    """Every step, by name, in the order they were declared."""
    return dict(_STEPS)


def get(name: str) -> Step:
    """The step called ``name``; a :class:`StackError` naming the closest ones otherwise."""
    found = _STEPS.get(name)
    if found is None:
        close = difflib.get_close_matches(name, list(_STEPS), n=3)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise StackError(f"no processing step {name!r}{hint}; the steps are: {', '.join(_STEPS)}")
    return found


def run(da: xr.DataArray, name: str, /, **params: Any) -> xr.DataArray:
    """Run step ``name`` with ``params``; a parameter it does not declare is an
    :class:`UnknownOptionError` naming the ones it does (and the closest, for a typo)."""
    found = get(name)
    problem = undeclared(found.parameters(), params, "parameter")
    if problem:
        raise UnknownOptionError(f"processing step {name!r} has {problem}")
    return found.func(da, **params)


__all__ = ["KINDS", "Step", "catalogue", "get", "run", "step"]
