"""Child processes that do not outlive xafm.

An encoder that xafm starts (ffmpeg) writes into xafm's temporary file. When xafm exits
normally or by an exception, it kills and waits for the encoder itself; when xafm is
killed (SIGKILL, the OOM killer), nobody would: the encoder would read the end of its
input and go on encoding the frames it holds into a temporary file nobody removes. On
Linux the child therefore asks the kernel for a SIGKILL when its parent dies
(``prctl(PR_SET_PDEATHSIG)``, set between fork and exec); elsewhere it is left to the
exception handling alone.

The kernel's "parent" is the thread that started the child: start one only from a thread
that outlives it (every writer starts and waits for its encoder in the same call).
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable

from .libc import linux_function

#: ``PR_SET_PDEATHSIG`` from ``<linux/prctl.h>``.
PR_SET_PDEATHSIG = 1


#: libc's ``prctl``, looked up here so that the child, between fork and exec, only calls it.
_PRCTL = linux_function("prctl", [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong])


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen`` that has the child killed when this
    process dies; None where the platform offers no such thing."""
    if _PRCTL is None:
        return None
    parent = os.getpid()
    prctl = _PRCTL

    def in_the_child() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request was made
            os._exit(1)

    return in_the_child
