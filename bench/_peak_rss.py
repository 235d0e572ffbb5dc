"""Peak memory of a child process: a prefix for its ``-c`` code that reports the
process's ``VmHWM`` on stderr at exit, and the parser of that line."""

from __future__ import annotations

#: Put before a child's code: at exit it writes ``VMHWM_KIB <n>`` to stderr.
REPORT_AT_EXIT = r"""
import atexit, sys
def _hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write("VMHWM_KIB " + line.split()[1] + "\n")
atexit.register(_hwm)
"""


def peak_mib(stderr: str) -> float:
    """The peak RSS (MiB) a child started with :data:`REPORT_AT_EXIT` reported."""
    return next(int(line.split()[1]) for line in stderr.splitlines() if line.startswith("VMHWM_KIB")) / 1024
