"""Keeping the extractor's memory flat while it streams gigabytes (glibc's mmap threshold)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1024 * 1024


def release_large_buffers() -> bool:
    """Makes glibc map (and unmap) every allocation of 1 MiB or more; True if it applied."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        applied = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    if not applied:
        log.debug("mallopt(M_MMAP_THRESHOLD) was refused")
    return applied
