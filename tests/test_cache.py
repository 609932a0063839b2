"""The on-disk kernel cache: where it goes, its fallbacks, and its staleness stamp."""

import ctypes
import errno
import os
import shutil
import textwrap
import warnings

import pytest
from numba.core.errors import NumbaWarning

from conftest import finished_python, start_python

from fastseq.kernels import jit


def test_cache_goes_beside_the_kernels_when_writable(monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(jit, "_is_writable_dir", lambda path: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert jit._choose_cache_dir() == os.path.join(jit._HERE, "__pycache__")


def test_read_only_package_falls_back_to_a_user_folder_with_one_warning(monkeypatch, tmp_path):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    in_tree = os.path.join(jit._HERE, "__pycache__")
    monkeypatch.setattr(jit, "_is_writable_dir", lambda path: path != in_tree)
    with pytest.warns(RuntimeWarning, match="not writable") as record:
        chosen = jit._choose_cache_dir()
    assert len(record) == 1
    assert chosen.startswith(str(tmp_path / "fastseq"))


def test_no_writable_folder_compiles_in_memory_with_one_warning(monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(jit, "_is_writable_dir", lambda path: False)
    with pytest.warns(RuntimeWarning, match="no writable folder") as record:
        assert jit._choose_cache_dir() is None
    assert len(record) == 1


def test_numba_cache_dir_is_respected(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert jit._choose_cache_dir() == str(tmp_path / "fastseq")


def test_stamp_covers_every_kernel_source(monkeypatch, tmp_path):
    # A kernel inlines helpers from other files, so editing any kernel file must change the
    # stamp of all of them (numba alone would only see the kernel's own file).
    copy = tmp_path / "kernels"
    shutil.copytree(jit._HERE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(jit, "_HERE", str(copy))
    before = jit._sources_digest()
    with open(copy / "activations.py", "a") as f:
        f.write("\n# edited\n")
    assert jit._sources_digest() != before


# A small serial kernel (the embedding) and a small parallel one (the affine) and, with the
# argument "lstm", TimeLSTM's forward and backward, run in a new process. The LSTM has enough
# rows to split them across threads (a training batch's path) and is wide enough for its loops
# to vectorise; its gates reach both branches of tanh.
_RUN = textwrap.dedent("""
    import hashlib, sys, warnings, numpy as np
    with_lstm = sys.argv[1] == "lstm"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import fastseq
        from fastseq.kernels.affine import affine_forward
        from fastseq.kernels.embedding import embedding_forward
        from fastseq.kernels.lstm import lstm_forward
        out = fastseq.TimeEmbedding(np.ones((5, 3), np.float32)).forward(np.array([[0, 4, 2]]))
        y = fastseq.TimeAffine(np.ones((3, 2), np.float32), np.ones(2, np.float32)).forward(out)
        kernels, arrays = [embedding_forward, affine_forward], [y]
        if with_lstm:
            rng = np.random.default_rng(0)
            N, T, D, H = 40, 6, 8, 64
            lstm = fastseq.TimeLSTM((rng.standard_normal((D, 4 * H)) / np.sqrt(D)).astype("f"),
                                    (rng.standard_normal((H, 4 * H)) / np.sqrt(H)).astype("f"),
                                    np.zeros(4 * H, "f"))
            hs = lstm.forward(rng.standard_normal((N, T, D)).astype("f"))
            dxs = lstm.backward(rng.standard_normal((N, T, H)).astype("f"))
            kernels.append(lstm_forward)
            arrays += [hs, dxs, *lstm.grads]
    assert out.shape == (1, 3, 3) and (out == 1).all() and (y == 4).all()
    stats = [getattr(k, "dispatcher", k).stats for k in kernels]
    print(len([w for w in caught if "fastseq" in str(w.message)]),
          " ".join(f"{len(s.cache_hits)},{len(s.cache_misses)}" for s in stats),
          hashlib.sha256(b"".join(a.tobytes() for a in arrays)).hexdigest())
""")


def _results(stdout):
    """(fastseq warnings, [(hits, misses) of each kernel: embedding, affine, LSTM forward], a
    hash of the outputs and the LSTM's gradients) from _RUN's output."""
    warned, *stats, total = stdout.split()
    return int(warned), [tuple(map(int, s.split(","))) for s in stats], total


def _environment(**variables):
    env = dict(os.environ, **variables)
    env.pop("NUMBA_DISABLE_JIT", None)
    return env


@pytest.fixture
def run(run_python):
    """Runs _RUN with the environment variables given (with TimeLSTM when ``lstm``); returns
    its ``_results``."""
    def run_with(lstm=False, **variables):
        result = run_python(_RUN, "lstm" if lstm else "-", env=_environment(**variables))
        assert result.returncode == 0, result.stderr
        return _results(result.stdout)
    return run_with


def start_early(folder):
    """The first process of the test below, which compiles into an empty cache folder (40 s),
    started as soon as the session has collected the test (see conftest.py)."""
    env = _environment(NUMBA_CACHE_DIR=str(folder / "cache"))
    return {"first": start_python(folder, "first", _RUN, "lstm", env=env)}


def test_second_process_loads_compiled_code_and_computes_the_same_bits(started_early, run):
    folder, processes = started_early
    result = finished_python(folder, "first", processes["first"], 300)
    assert result.returncode == 0, result.stderr
    warned, stats, first = _results(result.stdout)
    assert (warned, stats) == (0, [(0, 1)] * 3)
    assert any((folder / "cache").rglob("*.nbi")), "no cache index written"
    warned, stats, second = run(lstm=True, NUMBA_CACHE_DIR=str(folder / "cache"))
    assert (warned, stats) == (0, [(1, 0)] * 3), "the second process compiled again"
    assert second == first, "compiled and cached code computed different bits"


def test_unusable_cache_folder_still_runs(run, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    warned, stats, _ = run(NUMBA_CACHE_DIR=str(blocker))
    assert warned == 1 and [hits for hits, _ in stats] == [0, 0]


def _save_entries(cache_path, stamp, worker, count, barrier):
    """One of several processes that save cache entries into one folder at the same moment."""
    cache_file = jit._KernelCacheFile(cache_path, "kernel-1.py311", stamp)
    barrier.wait()
    for i in range(count):
        cache_file.save(("signature", worker, i), ("machine code", worker, i))


def test_processes_saving_at_once_keep_every_entry_with_its_own_code(tmp_path):
    # Numba's own index/data files, in the same race (checked): about 60 of 180 entries kept,
    # about 30 of those pointing at another entry's code.
    import multiprocessing
    context = multiprocessing.get_context("spawn")
    workers, count = 6, 30
    barrier = context.Barrier(workers)
    processes = [context.Process(target=_save_entries, args=(str(tmp_path), "stamp", w, count,
                                                             barrier)) for w in range(workers)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * workers
    cache_file = jit._KernelCacheFile(str(tmp_path), "kernel-1.py311", "stamp")
    keys = [("signature", w, i) for w in range(workers) for i in range(count)]
    assert sorted(cache_file._load_index()) == sorted(keys)
    assert all(cache_file.load(key) == ("machine code",) + key[1:] for key in keys)


def test_code_of_another_source_stamp_is_never_overwritten(tmp_path):
    # Two fastseq versions sharing one NUMBA_CACHE_DIR: each only ever reads its own code.
    old = jit._KernelCacheFile(str(tmp_path), "kernel-1.py311", "old stamp")
    new = jit._KernelCacheFile(str(tmp_path), "kernel-1.py311", "new stamp")
    old.save("signature", "old code")
    new.save("signature", "new code")
    assert new.load("signature") == "new code"
    old.save("signature", "old code")  # the old version takes the index back ...
    assert old.load("signature") == "old code"
    assert new.load("signature") is None  # ... and the new one compiles again, never loads it
    assert len(list(tmp_path.glob("*.nbc"))) == 2


_labs = ctypes.CDLL(None).labs  # a C function, called through its run-time address
_labs.restype, _labs.argtypes = ctypes.c_long, [ctypes.c_long]


def test_code_that_cannot_be_cached_warns_and_runs(tmp_path, monkeypatch):
    # Numba does not cache machine code that holds a run-time address (here a ctypes function;
    # at NUMBA_OPT=0 some kernels' own code) and warns naming the kernel's file, which the
    # cache locator must know: it raised AttributeError from the kernel call instead.
    monkeypatch.setattr(jit, "CACHE_DIR", str(tmp_path))

    @jit.kernel
    def absolute(x):
        return _labs(x)

    with pytest.warns(NumbaWarning, match="Cannot cache compiled function"):
        assert absolute(-3) == 3
    assert not jit.has_cached_code(absolute)


_HAS_CODE = textwrap.dedent("""
    import numpy as np
    import fastseq
    from fastseq.kernels import jit
    from fastseq.kernels.embedding import embedding_forward
    before = jit.has_cached_code(embedding_forward)
    fastseq.TimeEmbedding(np.ones((5, 3), np.float32)).forward(np.array([[0, 4]]))
    print(before, jit.has_cached_code(embedding_forward))
""")


def test_has_cached_code_tells_whether_a_kernel_was_compiled_into_the_folder(run_python,
                                                                             tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    env.pop("NUMBA_DISABLE_JIT", None)
    outputs = [run_python(_HAS_CODE, env=env) for _ in range(2)]
    assert [(r.returncode, r.stdout.split()) for r in outputs] == [(0, ["False", "True"]),
                                                                   (0, ["True", "True"])]


def test_a_cache_folder_that_fills_up_warns_once_and_compiling_goes_on(tmp_path, monkeypatch):
    # The folder was writable when chosen at import; a full disk later must not break the
    # kernel call whose compiled code numba is saving.
    cache_file = jit._KernelCacheFile(str(tmp_path), "kernel-1.py311", "stamp")

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_file, "_save_data", disk_full)
    monkeypatch.setattr(jit, "_save_failed", [])
    with pytest.warns(RuntimeWarning, match="could not write compiled kernels") as record:
        cache_file.save("signature", "machine code")
        cache_file.save("other signature", "other machine code")
    assert len(record) == 1
    assert cache_file._load_index() == {}
