"""xafm's colormaps registered with matplotlib when matplotlib is imported, not before.

``import xafm`` used to import matplotlib (about 55 ms) only to register ``xafm_afm`` and
``xafm_afm_uniform``. Now :func:`install` registers them at once when matplotlib is already
imported, and otherwise puts a one-shot finder first on ``sys.meta_path`` that, when
``matplotlib`` itself is imported (by anything: pyplot, xarray's plotting, xafm's drawing),
runs the package as usual and then registers them. So ``plt.imshow(img, cmap="xafm_afm")``
and xarray's ``.plot(cmap="xafm_afm")`` work after ``import xafm`` in either order, and a
session that never draws never imports matplotlib. xafm's own drawing code imports
:mod:`xafm.render.colormaps` itself, which registers them too (the hook is not needed there).

matplotlib declares no entry point for third-party colormaps, hence the hook.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

_lock = threading.Lock()


def register() -> None:
    """Register the colormaps now (imports matplotlib)."""
    importlib.import_module("xafm.render.colormaps")


def _register_quietly() -> None:
    try:
        register()
    except Exception as exc:  # never break the user's matplotlib import
        warnings.warn(f"xafm could not register its colormaps with matplotlib: {type(exc).__name__}: {exc}", stacklevel=3)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for ``matplotlib`` it asks the finders after it and wraps
    the loader of the spec they give, so that the colormaps are registered once the
    package has run. Only the spec the import system executes fires (a spec looked up to
    see whether matplotlib is installed, as xarray does, runs nothing); the finder then
    takes itself off ``sys.meta_path``."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "matplotlib":
            return None
        spec = None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        loader: Any = None if spec is None else spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            uninstall()
            _register_quietly()

        loader.exec_module = exec_module  # this spec's own loader instance only
        return spec


_finder = _Finder()


def install() -> None:
    """Register now if matplotlib is imported, else when it is (idempotent)."""
    with _lock:
        if "matplotlib" in sys.modules:
            if getattr(sys.modules["matplotlib"], "colormaps", None) is not None:
                _register_quietly()
            return  # imported but still initialising (xafm imported from matplotlib's own import): its drawing registers
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)


def uninstall() -> None:
    """Take the finder off ``sys.meta_path`` (after it fired, or for tests)."""
    try:
        sys.meta_path.remove(_finder)
    except ValueError:
        pass
