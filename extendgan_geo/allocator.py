"""Keep freed memory in the process for reuse (glibc), where the generator runs on CPU.

The generator allocates and frees the same large feature maps (tens of MB) for every window and training step.
glibc serves blocks above its mmap threshold (at most 32 MB) with fresh mappings and hands heap memory above its
trim threshold back at once, so each window can pay the kernel's page faults for memory it has just given back:
about a third of a 256 x 256 forward on the 2-core VM (docs/model.md, "Speed"). `tune()` sets, for this process, no
new mmap-served blocks (`M_MMAP_MAX` 0) and a 1 GiB trim threshold, so freed memory stays in the heap and the next
window reuses it; `release()` (`malloc_trim`) hands what is free back to the system when a fill ends.

The `gan` filler on CPU and CPU training call it; `match` does not (it gained nothing and kept more memory). Until
`release()`, the process keeps what it freed: the trim threshold only bounds the free memory at the top of the
heap, not what lies free between live blocks (measured peaks: 0.82-0.92 -> 0.95 GB on a 4096 x 4096 fill; 10.3 ->
14.4 GB for CPU training with batch 32). Threads other than the main one allocate from their own arenas, where
blocks of 64 MB and more are still mapped afresh each time (one window's feature maps are at most 32 MB). Set
`EGAN_TUNE_MALLOC=NO` to keep glibc's defaults. Other C libraries (musl, macOS, Windows) are left alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

logger = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_MAX = -4
TRIM_BYTES = 1 << 30

_tuned: bool | None = None
_libc: ctypes.CDLL | None = None


def tune() -> bool:
    """Apply the settings once per process; True when they are in effect (glibc on Linux, not opted out)."""
    global _tuned, _libc
    if _tuned is not None:
        return _tuned
    _tuned = False
    if os.environ.get("EGAN_TUNE_MALLOC", "YES").strip().upper() in ("NO", "FALSE", "OFF", "0"):
        logger.debug("EGAN_TUNE_MALLOC=NO: glibc's allocator defaults kept")
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        # M_MMAP_MAX first: a trim threshold set alone would only switch off glibc's adaptive mmap threshold.
        _tuned = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_BYTES))
        _libc = libc if _tuned else None
    except (OSError, AttributeError) as exc:  # pragma: no cover - an unusual libc
        logger.debug("mallopt unavailable (%s): allocator defaults kept", exc)
    return _tuned


def release() -> None:
    """Hand the free heap memory back to the system (after a fill); nothing unless `tune()` is in effect."""
    if _libc is not None:
        _libc.malloc_trim(0)
