"""How many threads fastseq's kernels use.

Kernels split batch rows (and, for weight gradients, output columns) into this many chunks
and run them in parallel; BLAS inside a kernel always runs on one thread, so the two never
compete for cores. Results do not depend on the setting beyond float rounding.

Set it with the environment variable FASTSEQ_NUM_THREADS before importing fastseq, or with
``fastseq.set_num_threads(n)`` at any time. The default is Numba's thread count (the number of
cores). On a machine where other processes keep cores busy, 1 is usually fastest.
"""

import os

import numba
import numpy as np

from .kernels.blas import pin_single_thread


def _checked(n, source):
    limit = numba.config.NUMBA_NUM_THREADS
    if isinstance(n, str) and n.strip().isdigit():
        n = int(n)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= limit:
        raise ValueError(f"{source} must be a whole number from 1 to {limit} (Numba's thread "
                         f"limit, NUMBA_NUM_THREADS), got {n!r}")
    return int(n)


_num_threads = (_checked(os.environ["FASTSEQ_NUM_THREADS"], "FASTSEQ_NUM_THREADS")
                if os.environ.get("FASTSEQ_NUM_THREADS") else numba.config.NUMBA_NUM_THREADS)


def set_num_threads(n):
    """Use n threads (1 <= n <= NUMBA_NUM_THREADS) in the kernels from now on."""
    global _num_threads
    _num_threads = _checked(n, "set_num_threads(n): n")


def get_num_threads():
    """The number of threads the kernels use."""
    return _num_threads


def chunks():
    """The number of chunks to give the next kernel call (one per thread); also keeps the
    BLAS that kernels call on one thread."""
    pin_single_thread()
    return _num_threads
