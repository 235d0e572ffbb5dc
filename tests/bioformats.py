"""Running Bio-Formats (GPL-2.0, ``../shared/tools/bioformats_package.jar``) as a separate
program from the tests: never imported, never shipped.

Each JVM starts in about a second (C1 compiler only), so the tests write every variant
first and run the JVMs side by side (:func:`run_all`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.helpers import SHARED_DATA

JAR = SHARED_DATA.parent / "tools" / "bioformats_package.jar"
OME = "{http://www.openmicroscopy.org/Schemas/OME/2016-06}"
#: UTF-8 in and out whatever the locale; the C1 compiler only (half the start-up time).
JAVA_OPTIONS = ("-Dfile.encoding=UTF-8", "-Dstdout.encoding=UTF-8", "-Dsun.stdout.encoding=UTF-8", "-XX:TieredStopAtLevel=1", "-Xshare:auto")
TIMEOUT_S = 120


def java_and_jar() -> tuple[str, Path]:
    """The java executable and the Bio-Formats jar; skip (locally) or fail (CI) without them."""
    java = shutil.which("java")
    missing = [what for what, ok in (("java", java is not None), (str(JAR), JAR.exists())) if not ok]
    if missing:
        msg = f"Bio-Formats needs {' and '.join(missing)} (the jar lives in ../shared/tools beside the project)"
        if os.environ.get("CI"):
            pytest.fail(msg + " (CI is set, so this is a failure)")
        pytest.skip(msg)
    assert java is not None
    return java, JAR


def run_all(commands: dict[str, list[str]]) -> dict[str, str]:
    """Run Bio-Formats tools side by side: ``{key: [class, args...]}`` to ``{key: output}``
    (stdout and stderr together). A tool that fails fails the test with its output."""
    java, jar = java_and_jar()
    procs = {
        key: subprocess.Popen([java, *JAVA_OPTIONS, "-cp", str(jar), *cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for key, cmd in commands.items()
    }
    out = {}
    for key, proc in procs.items():
        raw, _ = proc.communicate(timeout=TIMEOUT_S)
        text = raw.decode("utf-8", errors="replace")
        if proc.returncode != 0:
            pytest.fail(f"Bio-Formats {commands[key][0]} failed on {key} (exit {proc.returncode}):\n{text[-3000:]}")
        out[key] = text
    return out


def image_info(paths: dict[str, Path]) -> dict[str, str]:
    """``ImageInfo -nopix -omexml`` of each file: how Bio-Formats (Fiji's reader) sees it."""
    cmd = ["loci.formats.tools.ImageInfo", "-no-upgrade", "-nopix", "-omexml"]
    return run_all({key: [*cmd, str(p)] for key, p in paths.items()})


def omexml_dump(output: str) -> ET.Element:
    """The OME-XML document Bio-Formats built from a file (the end of ImageInfo's output)."""
    start, end = output.rfind("<?xml"), output.rfind("</OME>")
    assert start >= 0 and end > start, f"no OME-XML in Bio-Formats' output:\n{output[-2000:]}"
    return ET.fromstring(output[start : end + len("</OME>")].encode("utf-8"))
