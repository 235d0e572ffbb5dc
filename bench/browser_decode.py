"""Independent check: does a web browser decode xafm's GIFs and videos to the right colours?

Writes a stack of known values as GIF (the default ``compression="auto"``, and literal and
LZW coding forced), MP4 (H.264) and WebM (VP9),
loads each in headless Chromium from a local HTTP server, draws it to a canvas and
compares pixels away from the edges with the palette colours xafm meant. Needs a
``chromium`` binary (Debian: ``apt-get install chromium``), so it is not part of the
test suite::

    python -m bench.browser_decode [--chromium /usr/bin/chromium]

Only the first frame is sampled: a decoder that rejects the stream fails there.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

PAGE = """<html><body><pre id="out">pending</pre><script>
const pts = %(points)s, names = %(names)s, size = %(size)s, results = {};
const show = () => { document.getElementById('out').textContent = JSON.stringify(results); };
function sample(el, name) {
  const c = document.createElement('canvas'); c.width = size[1]; c.height = size[0];
  const ctx = c.getContext('2d'); ctx.drawImage(el, 0, 0);
  const r = {};
  for (const [k, [y, x]] of Object.entries(pts)) { const d = ctx.getImageData(x, y, 1, 1).data; r[k] = [d[0], d[1], d[2]]; }
  results[name] = r; show();
}
for (const name of names) {
  if (name.endsWith('.gif')) {
    const img = new Image(); img.onload = () => sample(img, name);
    img.onerror = () => { results[name] = 'not decoded'; show(); }; img.src = name;
  } else {
    const v = document.createElement('video'); v.muted = true; v.src = name;
    v.addEventListener('loadeddata', () => sample(v, name));
    v.addEventListener('error', () => { results[name] = 'not decoded'; show(); });
  }
}
</script></body></html>"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    import xafm
    from xafm import animation, render

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "chromium")
    args = ap.parse_args(argv)

    n, h, w = 4, 96, 96
    data = np.zeros((n, h, w))
    data[:, :, w // 3 : 2 * w // 3] = 0.5
    data[:, :, 2 * w // 3 :] = 1.0
    data[:, 40:56, 4:20] = np.nan
    da = xafm.stack(data, pixel_size_nm=2.0, times=np.arange(n) * 0.5)
    opts = dict(zmin=0.0, zmax=1.0, upscale=1, timestamps=False, scale_bar=False)
    points = {"zmin": [70, 16], "middle": [30, 48], "zmax": [30, 80], "NaN": [48, 12]}  # [y, x]
    pal = render.build_palette(render.DEFAULT_CMAP)
    expected = {"zmin": pal[0], "middle": pal[render.N_DATA // 2], "zmax": pal[render.N_DATA - 1], "NaN": pal[render.NAN_INDEX]}

    with tempfile.TemporaryDirectory(prefix="xafm-browser-") as d:
        folder = Path(d)
        files = {
            "auto.gif": lambda p: animation.to_gif(da, p, **opts),
            "fast.gif": lambda p: animation.to_gif(da, p, compression="fast", **opts),
            "lzw.gif": lambda p: animation.to_gif(da, p, compression="lzw", **opts),
            "h264.mp4": lambda p: animation.to_video(da, p, **opts),
            "vp9.webm": lambda p: animation.to_video(da, p, **opts),
        }
        for name, write in files.items():
            write(folder / name)
        page = PAGE % {"points": json.dumps(points), "names": json.dumps(list(files)), "size": json.dumps([h, w])}
        (folder / "page.html").write_text(page)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            out = subprocess.run(
                [args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom",
                 f"http://127.0.0.1:{server.server_address[1]}/page.html"],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
        finally:
            server.shutdown()
    version = subprocess.run([args.chromium, "--version"], capture_output=True, text=True).stdout.strip()
    found = re.search(r'<pre id="out">(.*?)</pre>', out.stdout, re.S)
    results = json.loads(found.group(1)) if found and found.group(1) != "pending" else {}
    print(version)
    ok = True
    for name in files:
        got = results.get(name, "no result")
        if not isinstance(got, dict):
            print(f"  {name:9s} {got}")
            ok = False
            continue
        worst = max(int(np.max(np.abs(np.array(got[k]) - expected[k].astype(int)))) for k in points)
        good = worst <= 6  # video: BT.601 limited range and back, within 6/255
        ok &= good
        print(f"  {name:9s} decoded; largest colour difference {worst}/255 {'ok' if good else 'WRONG'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
