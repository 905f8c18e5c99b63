"""The agent's OpenBLAS limit (`agent.blas_threads`): numpy's OpenBLAS then runs on one thread."""
import ctypes

import numpy as np
import pytest

from agent.blas_threads import SETTERS, limit_openblas_threads, loaded_openblas

GETTERS = tuple(name.replace("_set_", "_get_") for name in SETTERS)


def openblas_threads(path: str) -> int:
    library = ctypes.CDLL(path)
    getter = next(getattr(library, name) for name in GETTERS if hasattr(library, name))
    return int(getter())


def test_numpys_openblas_is_set_to_one_thread() -> None:
    np.linalg.inv(np.eye(3))  # numpy's linear algebra is loaded
    libraries = loaded_openblas()
    if not libraries:
        pytest.skip("numpy here does not use OpenBLAS")
    before = max(openblas_threads(path) for path in libraries)
    try:
        assert limit_openblas_threads(1) == libraries
        assert [openblas_threads(path) for path in libraries] == [1] * len(libraries)
    finally:
        limit_openblas_threads(before)
