"""The CLI's process-wide setting: a fixed mmap threshold (glibc), without which long DAgger
collections grew the heap to the machine's memory (see `fixed_mmap_threshold`)."""
import ctypes.util
import sys

import pytest

from training.cli import fixed_mmap_threshold


@pytest.mark.skipif(not sys.platform.startswith("linux") or ctypes.util.find_library("c") is None,
                    reason="glibc only")
def test_mmap_threshold_is_fixed_on_glibc() -> None:
    assert fixed_mmap_threshold()
