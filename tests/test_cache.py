"""The on-disk kernel cache: where it goes, its fallbacks, and its staleness stamp."""

import os
import shutil
import subprocess
import sys
import textwrap
import warnings

import pytest

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


_SMALL_RUN = textwrap.dedent("""
    import warnings, numpy as np
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import fastseq
        from fastseq.kernels.embedding import embedding_forward
        layer = fastseq.TimeEmbedding(np.ones((5, 3), np.float32))
        out = layer.forward(np.array([[0, 4, 2]]))
    assert out.shape == (1, 3, 3) and (out == 1).all()
    print(len([w for w in caught if "fastseq" in str(w.message)]),
          len(embedding_forward.stats.cache_hits), len(embedding_forward.stats.cache_misses))
""")


def _run(env):
    result = subprocess.run([sys.executable, "-c", _SMALL_RUN], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return [int(v) for v in result.stdout.split()]


def test_second_process_loads_compiled_code_from_disk(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    warned, hits, misses = _run(env)
    assert (warned, hits, misses) == (0, 0, 1)
    warned, hits, misses = _run(env)
    assert (warned, hits, misses) == (0, 1, 0)


def test_unusable_cache_folder_still_runs(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(blocker))
    warned, hits, misses = _run(env)
    assert warned == 1 and hits == 0
