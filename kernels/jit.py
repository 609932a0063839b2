"""JIT options and the on-disk cache of every fastseq kernel: the one place they are set.

Kernels compile lazily (no signatures), so one function serves float32 and float64, and their
machine code is cached on disk, so a second process loads it instead of compiling again.

Numba stamps a cached function with the hash of its own source file only. A kernel that calls a
helper from another file of this folder (``activations.py``, ``blas.py``) would then load stale
code after the helper changed. ``_KernelCacheLocator`` stamps every kernel with one hash over all
the sources in this folder, so editing any of them recompiles everything that may depend on it.

Where the cache lives: ``$NUMBA_CACHE_DIR/fastseq`` when that variable is set, else the
``__pycache__`` folder beside these files, else (read-only install) a per-user folder, with one
warning. With no writable folder at all, kernels compile in memory, again with one warning.

Several processes may compile into one cache folder at once (two trainings started together
on a fresh install). Numba's own cache files then lose entries and can map a signature to the
machine code of another one, which it only finds out by crashing or computing nonsense:
``_KernelCacheFile`` names each file of machine code after its signature and the source stamp,
and updates the index under a file lock.
"""

import contextlib
import functools
import hashlib
import importlib
import os
import pickle
import tempfile
import threading
import warnings

import numba
from numba.core import caching

# Only 'nsz' (the sign of a zero may be ignored, so x + 0.0 folds to x). Exact division (no
# 'arcp'), IEEE NaN/inf semantics (no 'nnan'/'ninf': isfinite checks must not be optimised
# away), and neither 'reassoc' nor 'contract': with them, LLVM reordered sums and fused
# multiply-adds differently in a kernel compiled in the running process and in the same kernel
# loaded from the cache, so the process that compiled computed other numbers than later ones.
# Where fusing or reordering pays, the source does it: activations.fma, blas.dot.
FASTMATH = {"nsz"}

_HERE = os.path.dirname(os.path.abspath(__file__))


def _sources_digest():
    digest = hashlib.sha256(numba.__version__.encode())
    for name in sorted(os.listdir(_HERE)):
        if name.endswith(".py"):
            with open(os.path.join(_HERE, name), "rb") as f:
                digest.update(name.encode() + b"\0" + f.read())
    return digest.hexdigest()


def _is_writable_dir(path):
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def _user_cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    install = hashlib.sha1(_HERE.encode()).hexdigest()[:16]
    return os.path.join(base, "fastseq", "numba", install)


def _choose_cache_dir():
    numba_dir = os.environ.get("NUMBA_CACHE_DIR")
    if numba_dir:
        candidates = [os.path.join(numba_dir, "fastseq")]
    else:
        candidates = [os.path.join(_HERE, "__pycache__"), _user_cache_dir()]
    for path in candidates:
        if _is_writable_dir(path):
            if path != candidates[0]:
                warnings.warn(
                    f"fastseq: {candidates[0]} is not writable; caching compiled kernels in "
                    f"{path} instead (set NUMBA_CACHE_DIR to choose another folder)",
                    RuntimeWarning, stacklevel=3)
            return path
    warnings.warn(
        f"fastseq: no writable folder for the kernel cache (tried {', '.join(candidates)}); "
        "kernels will compile in every new process. Set NUMBA_CACHE_DIR to a writable folder.",
        RuntimeWarning, stacklevel=3)
    return None


class _KernelCacheLocator(caching._CacheLocator):
    """Where numba finds the cache of a kernel, and the stamp that tells whether it is fresh."""

    def __init__(self, py_func, py_file):
        self._lineno = py_func.__code__.co_firstlineno
        self._py_file = py_file  # numba names it when it warns that code cannot be cached

    def ensure_cache_path(self):
        os.makedirs(CACHE_DIR, exist_ok=True)

    def get_cache_path(self):
        return CACHE_DIR

    def get_source_stamp(self):
        return SOURCE_STAMP

    def get_disambiguator(self):
        return str(self._lineno)

    @classmethod
    def from_function(cls, py_func, py_file):
        return cls(py_func, py_file)


@contextlib.contextmanager
def _locked(path):
    """Hold an exclusive lock on the file at path (created if need be) across processes. Where
    there is no lock (Windows, file systems without locks), index entries saved at the same
    moment may be lost (compiled again later), never mixed up."""
    try:
        import fcntl
        lock_file = open(path, "ab")
    except (ImportError, OSError):
        yield
        return
    with lock_file:  # closing the file releases the lock
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        except OSError:
            pass
        yield


_save_failed = []  # warn once per process


def _warn_unsaved(error):
    if not _save_failed:
        _save_failed.append(error)
        warnings.warn(f"fastseq: could not write compiled kernels to the cache folder "
                      f"{CACHE_DIR} ({error}); they work, but the next process compiles them "
                      "again. Free space there or set NUMBA_CACHE_DIR to another folder.",
                      RuntimeWarning, stacklevel=2)


class _KernelCacheFile(caching.IndexDataCacheFile):
    """Numba's index and data files of one kernel, safe for processes that save at once.

    Numba numbers a kernel's data files 1, 2, ... in the order signatures are saved, so two
    processes that each read the index before the other wrote it save different signatures
    under one number, and the index keeps only the last writer's entries. Here a data file is
    named after a hash of (source stamp, signature key), so it only ever holds that code; the
    data file is written before the index entry that points to it; and the index is read,
    extended and written under a lock."""

    def save(self, key, data):
        digest = hashlib.sha256(pickle.dumps((self._source_stamp, key), protocol=4)).digest()
        data_name = self._data_name(int.from_bytes(digest[:8], "little"))
        try:
            with _locked(self._index_path + ".lock"):
                self._save_data(data_name, data)
                overloads = self._load_index()
                overloads[key] = data_name
                self._save_index(overloads)
        except OSError as e:  # e.g. the disk filled up since the folder was chosen
            _warn_unsaved(e)


class _KernelCacheImpl(caching.CompileResultCacheImpl):
    _locator_classes = [_KernelCacheLocator]


class _KernelCache(caching.FunctionCache):
    """Numba's function cache with fastseq's locator and _KernelCacheFile."""

    _impl_class = _KernelCacheImpl

    def __init__(self, py_func):
        super().__init__(py_func)
        self._cache_file = _KernelCacheFile(self._cache_path, self._impl.filename_base,
                                            SOURCE_STAMP)


CACHE_DIR = _choose_cache_dir()
SOURCE_STAMP = _sources_digest()


def has_cached_code(kernel):
    """Whether the cache folder holds machine code of ``kernel`` compiled from the current
    sources (for any argument types)."""
    cache = getattr(getattr(kernel, "dispatcher", kernel), "_cache", None)
    return isinstance(cache, _KernelCache) and bool(cache._cache_file._load_index())


class JITDisabled(RuntimeError):
    """A fastseq kernel was called in a process started with NUMBA_DISABLE_JIT=1."""


def require_jit(what):
    """Raise JITDisabled, naming ``what``, when Numba's JIT is off (NUMBA_DISABLE_JIT=1): the
    kernels call BLAS through pointers and use views that only exist in compiled code."""
    if numba.config.DISABLE_JIT:
        raise JITDisabled(f"{what} cannot run with NUMBA_DISABLE_JIT=1 (fastseq's kernels work "
                          "only compiled); unset NUMBA_DISABLE_JIT (fastseq.reference has the "
                          "same layers and models in plain NumPy)")


# The options of every kernel and helper (kernels are also cached on disk: see kernel()).
JIT_OPTIONS = dict(nogil=True, fastmath=FASTMATH, error_model="numpy")


def _threadsafe_layer_available():
    """Whether Numba will run parallel kernels on a layer that allows launches from several
    threads at once (tbb, omp); its fallback, workqueue, aborts the process instead."""
    layer = numba.config.THREADING_LAYER
    if layer == "workqueue":
        return False
    if layer in ("tbb", "omp", "threadsafe", "safe"):
        return True  # numba itself refuses to run when the requested layer is missing
    for module in ("numba.np.ufunc.tbbpool", "numba.np.ufunc.omppool"):
        try:
            importlib.import_module(module)
            return True
        except ImportError:
            pass
    return False


_launch_lock = None if _threadsafe_layer_available() else threading.Lock()


def kernel(func=None, *, parallel=False, exact=False):
    """Compile ``func`` as a fastseq kernel: lazily typed, GIL released, cached on disk.

    ``parallel=True``: the kernel splits its work over ``prange`` chunks (without a thread-safe
    Numba threading layer, launches from several threads are serialised).
    ``exact=True``: IEEE arithmetic exactly as written, without FASTMATH (signed zeros kept),
    for results that must match NumPy's bit for bit; helpers it calls keep their own flags.
    """
    if func is None:
        return functools.partial(kernel, parallel=parallel, exact=exact)
    options = dict(JIT_OPTIONS, fastmath=False) if exact else JIT_OPTIONS
    dispatcher = numba.njit(parallel=parallel, **options)(func)
    if not isinstance(dispatcher, numba.core.dispatcher.Dispatcher):  # NUMBA_DISABLE_JIT=1
        @functools.wraps(func)
        def refuse(*args):
            require_jit(f"fastseq kernel {func.__name__}")
        return refuse
    if CACHE_DIR is not None:
        dispatcher._cache = _KernelCache(func)  # what numba's cache=True does, with our files
    if not parallel or _launch_lock is None:
        return dispatcher

    @functools.wraps(func)
    def serialised(*args):
        with _launch_lock:
            return dispatcher(*args)

    serialised.dispatcher = dispatcher
    return serialised


def helper(func=None, *, exact=False, any_order=False):
    """Compile ``func`` as a helper called from kernels (compiled into each caller, not cached
    alone). ``exact=True``: without FASTMATH, as for kernels. ``any_order=True``: FASTMATH plus
    reassociation, so that its reductions vectorise; only for helpers whose result cannot
    depend on the order of their operations (a sum of zeros and NaNs)."""
    if func is None:
        return functools.partial(helper, exact=exact, any_order=any_order)
    if exact:
        return numba.njit(**dict(JIT_OPTIONS, fastmath=False))(func)
    if any_order:
        return numba.njit(**dict(JIT_OPTIONS, fastmath=FASTMATH | {"reassoc"}))(func)
    return numba.njit(**JIT_OPTIONS)(func)


@helper
def chunk(k, n_chunks, n):
    """Bounds [lo, hi) of the k-th of n_chunks near-equal parts of range(n)."""
    return k * n // n_chunks, (k + 1) * n // n_chunks
