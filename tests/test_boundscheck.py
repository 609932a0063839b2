"""Every kernel at small shapes under NUMBA_BOUNDSCHECK=1 (issue 6: catch any out-of-bounds
access inside the kernels themselves, which fastseq's input checks cannot see).

The workload (tests/boundscheck_workload.py) runs in new processes, one per dtype, side by side
so that a two-core machine compiles both at once. They compile without LLVM's optimisations
(NUMBA_OPT=0): numba emits the bounds checks before LLVM sees the code, so the same accesses are
checked, and the two processes take 80 s instead of 120 s. Each gets an empty NUMBA_CACHE_DIR:
numba's cache index keys a compiled function on its signature, the target CPU and its bytecode
(``numba.core.caching.Cache._index_key``) but not on the boundscheck flag, so kernels cached by
an ordinary run would load without the checks.
"""
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

WORKLOAD = Path(__file__).with_name("boundscheck_workload.py")
DTYPES = ["float32", "float64"]


def test_every_kernel_runs_with_bounds_checks(run_python, tmp_path):
    code = WORKLOAD.read_text()

    def run(dtype):
        cache = tmp_path / f"cache-{dtype}"
        env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(cache),
                   NUMBA_NUM_THREADS="2", NUMBA_OPT="0")
        return run_python(code, dtype, env=env, timeout=900), cache

    with ThreadPoolExecutor(len(DTYPES)) as pool:
        results = list(pool.map(run, DTYPES))
    for dtype, (result, cache) in zip(DTYPES, results):
        assert result.returncode == 0, f"{dtype}:\n{result.stdout}\n{result.stderr}"
        assert f"every kernel ran at {dtype} with bounds checks" in result.stdout
        # compiled in that process (with the checks), not loaded from an older cache
        assert any(name.endswith(".nbi") for name in os.listdir(cache / "fastseq")), dtype
