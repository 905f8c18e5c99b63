"""One thread for the OpenBLAS libraries loaded in this process (numpy's linear algebra).

The held-object fit (`agent.insertion.held_fit`) solves tiny systems (6 unknowns, 4x4 poses) on every observation.
OpenBLAS runs even those with its threads, which costs more than the solve, and far more when other processes hold
the cores (its threads then wait for them): this is the reason the agent limits it. Linux only (/proc/self/maps);
elsewhere nothing changes. Pure Python (3.8).
"""
import ctypes
from pathlib import Path
from typing import List

SETTERS = tuple("{}openblas_set_num_threads{}".format(prefix, suffix)  # numpy's, scipy's; 64-bit or 32-bit ints
                for prefix in ("", "scipy_") for suffix in ("64_", ""))


def loaded_openblas() -> List[str]:
    """Paths of the OpenBLAS libraries mapped into this process."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = {line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower()}
    return sorted(path for path in paths if path.startswith("/"))


def limit_openblas_threads(threads: int = 1) -> List[str]:
    """Set every loaded OpenBLAS to `threads` threads (process-wide); returns the libraries changed."""
    changed = []
    for path in loaded_openblas():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for name in SETTERS:
            setter = getattr(library, name, None)
            if setter is not None:
                setter(ctypes.c_int(threads))
                changed.append(path)
                break
    return changed
