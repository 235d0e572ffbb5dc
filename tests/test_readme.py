"""The README's example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    text = README.read_text()
    code = re.search(r"## Example\s+```python\n(.*?)```", text, re.S).group(1)
    assert len(code.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    for name in ("video.h5", "video.npz", "video.ome.tif", "video.ome.zarr", "video.gif"):
        assert (tmp_path / "out" / name).exists(), name
    back = namespace["back"]
    assert back.shape == (50, 256, 256) and list(back.afm.masks) == ["particles"] and list(back.afm.layers) == ["raw"]
    np.testing.assert_allclose(back.values, namespace["da"].values.astype(np.float32))
    assert "'type': 'read'" in capsys.readouterr().out
