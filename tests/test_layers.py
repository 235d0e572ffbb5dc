"""The package's layers hold: the core never imports the wings, the model and rendering never
import a format module, and file formats and animations stay apart.

Every ``import`` statement counts, including those inside functions (they are how a
module reaches up a layer without an import circle showing at import time).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xafm"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, source: str | None = None) -> set[str]:
    """Absolute names of the xafm modules ``path`` imports, anywhere in the file."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    found = set()
    text = path.read_text(encoding="utf-8") if source is None else source
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("xafm"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("xafm"):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)
    return found


def _modules(sub: str) -> list[Path]:
    return sorted((PACKAGE / sub).rglob("*.py")) if (PACKAGE / sub).is_dir() else [PACKAGE / f"{sub}.py"]


def _reaches(imports: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(i for i in imports if any(i == p or i.startswith(p + ".") for p in prefixes))


@pytest.mark.parametrize("path", _modules("core"), ids=lambda p: p.name)
def test_the_core_imports_only_the_core(path):
    allowed = ("xafm.core", "xafm.exceptions", "xafm._version")
    outside = [i for i in _imports(path) if not any(i == a or i.startswith(a + ".") for a in allowed)]
    assert outside == [], f"{path.name} reaches outside the core"


def test_conventions_are_the_bottom_and_provenance_does_not_need_the_model():
    core = PACKAGE / "core"
    assert _reaches(_imports(core / "conventions.py"), ("xafm.core",)) == []
    assert _reaches(_imports(core / "provenance.py"), ("xafm.core.model",)) == []
    assert _reaches(_imports(core / "lazy.py"), ("xafm.core.model", "xafm.core.provenance")) == []


@pytest.mark.parametrize("path", _modules("render"), ids=lambda p: p.name)
def test_rendering_never_imports_formats_animations_or_the_table(path):
    assert _reaches(_imports(path), ("xafm.formats", "xafm.animation", "xafm.registry", "xafm.accessor", "xafm.cli")) == []


@pytest.mark.parametrize("path", _modules("formats"), ids=lambda p: p.name)
def test_file_formats_do_not_reach_rendering_or_the_front_ends(path):
    assert _reaches(_imports(path), ("xafm.render", "xafm.animation", "xafm.accessor", "xafm.cli", "xafm.processing")) == []


@pytest.mark.parametrize("path", _modules("animation"), ids=lambda p: p.name)
def test_animations_do_not_reach_the_file_formats(path):
    assert _reaches(_imports(path), ("xafm.formats", "xafm.accessor", "xafm.cli")) == []


def test_the_walk_sees_imports_inside_functions():
    """The checks above would miss a layer breach hidden in a function: make sure not."""
    assert "xafm.core.provenance" in _imports(PACKAGE / "core" / "model.py")
    breach = "def f():\n    from ..formats import _bundle\n    from xafm import registry\n"
    got = _imports(PACKAGE / "core" / "model.py", source=breach)
    assert "xafm.formats._bundle" in got and "xafm.registry" in got
