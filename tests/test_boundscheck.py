"""Every kernel at small shapes under NUMBA_BOUNDSCHECK=1 (issue 6: catch any out-of-bounds
access inside the kernels themselves, which fastseq's input checks cannot see).

The workload (tests/boundscheck_workload.py) runs in new processes, one per dtype, side by side
and started as soon as the session has collected this test (``start_early``, see conftest.py),
so that they compile while the rest of the suite runs. They compile without LLVM's
optimisations (NUMBA_OPT=0): numba emits the bounds checks before LLVM sees the code, so the
same accesses are checked, and the two processes take 80 s instead of 120 s. Each gets an empty
NUMBA_CACHE_DIR: numba's cache index keys a compiled function on its signature, the target CPU
and its bytecode (``numba.core.caching.Cache._index_key``) but not on the boundscheck flag, so
kernels cached by an ordinary run would load without the checks.
"""
import os
from pathlib import Path

from conftest import finished_python, start_python

WORKLOAD = Path(__file__).with_name("boundscheck_workload.py")
DTYPES = ["float32", "float64"]
TIMEOUT_SECONDS = 900


def start_early(folder):
    code = WORKLOAD.read_text()
    return {dtype: start_python(folder, dtype, code, dtype, env=dict(
        os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_NUM_THREADS="2", NUMBA_OPT="0",
        NUMBA_CACHE_DIR=str(folder / f"cache-{dtype}"))) for dtype in DTYPES}


def test_every_kernel_runs_with_bounds_checks(started_early):
    folder, processes = started_early
    for dtype, process in processes.items():
        result = finished_python(folder, dtype, process, TIMEOUT_SECONDS)
        assert result.returncode == 0, f"{dtype}:\n{result.stdout}\n{result.stderr}"
        assert f"every kernel ran at {dtype} with bounds checks" in result.stdout
        # compiled in that process (with the checks), not loaded from an older cache
        cache = folder / f"cache-{dtype}" / "fastseq"
        assert any(name.endswith(".nbi") for name in os.listdir(cache)), dtype
