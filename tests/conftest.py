"""Shared fixtures and helpers for the tests of fastseq's fast layers.

Shapes: N batch, T time steps, D input width, H hidden width, V vocabulary.

Tolerances are named once here. The fast layers are compared with their plain NumPy twin in
``fastseq.reference``: at float64 both use libm and differ only by summation order (BLAS
blocking, fastmath reassociation), at float32 the kernels also use polynomial exp/tanh
(relative error ~1.5e-7) that compounds over the time steps.
"""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastseq

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # a test extra; only tests/test_properties.py needs it
    settings = None

# fast layer vs reference twin
RTOL64 = 1e-10
ATOL64 = 1e-12  # for entries that cancel to ~0 (values are O(1))
RTOL32 = 1e-4
ATOL32 = 1e-5
# the same fast layer run with 1 and with 2 threads: only float rounding may differ
THREADS_RTOL64 = 1e-13
THREADS_ATOL64 = 1e-14
THREADS_RTOL32 = 1e-6
THREADS_ATOL32 = 1e-6
# central differences at float64: truncation ~FD_EPS**2, round-off ~1e-16 / FD_EPS
FD_EPS = 1e-6
FD_RTOL = 1e-6
FD_ATOL = 1e-8

DTYPES = [np.float32, np.float64]
THREAD_COUNTS = [1, 2]

# Hypothesis profiles for tests/test_properties.py. "ci" (chosen when the environment variable
# CI is set, as .ci/run does): derandomized (the same examples on every run), no example
# database, no deadline (the first call of a kernel with new argument types compiles it), and
# enough examples per test that the file runs at least PROPERTY_MIN_EXAMPLES_CI in total
# (checked at its end). "dev" (the default elsewhere): fewer, random examples.
# HYPOTHESIS_PROFILE picks one by name.
PROPERTY_MIN_EXAMPLES_CI = 500
PROPERTY_EXAMPLES_PER_TEST = {"ci": 250, "dev": 25}


def property_profile(environ):
    """The name of the hypothesis profile to load in the environment ``environ``."""
    return environ.get("HYPOTHESIS_PROFILE") or ("ci" if environ.get("CI") else "dev")


if settings is not None:
    settings.register_profile(
        "ci", max_examples=PROPERTY_EXAMPLES_PER_TEST["ci"], deadline=None, derandomize=True,
        database=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile(
        "dev", max_examples=PROPERTY_EXAMPLES_PER_TEST["dev"], deadline=None,
        suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(property_profile(os.environ))


def tolerances(dtype):
    """(rtol, atol) for comparing a fast layer with its reference twin at ``dtype``."""
    return (RTOL64, ATOL64) if np.dtype(dtype) == np.float64 else (RTOL32, ATOL32)


def thread_tolerances(dtype):
    """(rtol, atol) for comparing a fast layer run with 1 thread against 2 threads."""
    if np.dtype(dtype) == np.float64:
        return THREADS_RTOL64, THREADS_ATOL64
    return THREADS_RTOL32, THREADS_ATOL32


def assert_close(got, want, dtype, err_msg=""):
    """got vs want with the named tolerances of ``dtype``; got must also have that dtype."""
    got = np.asarray(got)
    rtol, atol = tolerances(dtype)
    assert got.dtype == np.dtype(dtype), f"{err_msg}: dtype {got.dtype}, expected {np.dtype(dtype)}"
    assert_allclose(got, np.asarray(want), rtol=rtol, atol=atol, err_msg=err_msg)


def assert_threads_agree(got1, got2, dtype, err_msg=""):
    rtol, atol = thread_tolerances(dtype)
    assert_allclose(np.asarray(got1), np.asarray(got2), rtol=rtol, atol=atol, err_msg=err_msg)


def finite_difference(loss_fn, x, eps=FD_EPS):
    """Central-difference gradient of the scalar ``loss_fn()`` w.r.t. the float64 array ``x``,
    which is perturbed in place (and restored exactly) one entry at a time."""
    assert x.dtype == np.float64, "finite differences only at float64"
    grad = np.zeros(x.shape, np.float64)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        saved = x[i]
        x[i] = saved + eps
        up = loss_fn()
        x[i] = saved - eps
        down = loss_fn()
        x[i] = saved
        grad[i] = (up - down) / (2 * eps)
    return grad


@pytest.fixture
def rng():
    return np.random.default_rng(20240607)


@pytest.fixture(params=THREAD_COUNTS, ids=lambda n: f"threads{n}")
def threads(request):
    """Runs the test with fastseq using 1 and then 2 threads; restores the previous count."""
    previous = fastseq.get_num_threads()
    try:
        fastseq.set_num_threads(request.param)
        yield request.param
    finally:
        fastseq.set_num_threads(previous)


@pytest.fixture
def thread_count():
    """Sets the thread count inside a test: ``with``-free helper, restored afterwards."""
    previous = fastseq.get_num_threads()
    try:
        yield fastseq.set_num_threads
    finally:
        fastseq.set_num_threads(previous)


@pytest.fixture
def run_python(tmp_path_factory):
    """Runs ``python -c code *args`` in a new process, from an empty folder so that it imports
    the installed fastseq as a user would (the source folder has no ``fastseq/kernels``: the
    kernels are installed there from the top-level ``kernels/``). Returns the CompletedProcess,
    with stdout and stderr as text."""
    cwd = tmp_path_factory.mktemp("cwd")

    def run(code, *args, env=None, timeout=300):
        return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd,
                              capture_output=True, text=True, timeout=timeout)
    return run


# Work that a test runs in other processes can start as soon as the session has collected the
# test, rather than when its turn comes: a first run of the suite spends most of its time
# compiling kernels in this process, on one core, and the other core then does that work
# meanwhile. Measured, the whole suite with an empty cache, back to back on one machine: 610 s
# with the bounds-checked runs and the first cache process started early, 678 s without. A test
# module opts in with a function ``start_early(folder)`` that starts its processes from the
# empty folder ``folder`` (``start_python``) and returns them as a dict by name; its tests get
# ``(folder, processes)`` from the fixture ``started_early`` and wait with ``finished_python``.
_STARTED_EARLY = pytest.StashKey[dict]()


def pytest_collection_finish(session):
    started = session.config.stash.setdefault(_STARTED_EARLY, {})
    if session.config.option.collectonly:
        return
    for item in session.items:
        module = getattr(item, "module", None)
        start = getattr(module, "start_early", None)
        if start is not None and module.__name__ not in started:
            folder = Path(tempfile.mkdtemp(prefix="fastseq-tests-"))
            started[module.__name__] = (folder, start(folder))


def pytest_sessionfinish(session):
    for folder, processes in session.config.stash.get(_STARTED_EARLY, {}).values():
        for process in processes.values():
            if process.poll() is None:  # its test did not run to the end
                process.kill()
                process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def start_python(folder, name, code, *args, env):
    """Starts ``python -c code *args`` from ``folder``, which holds no fastseq (so that it imports
    the installed one, as ``run_python``), writing its stdout and stderr to ``name``.out and
    ``name``.err there; returns the Popen."""
    with open(folder / f"{name}.out", "w") as out, open(folder / f"{name}.err", "w") as err:
        return subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=folder,
                                stdout=out, stderr=err)


def finished_python(folder, name, process, timeout):
    """Waits for a process of ``start_python``; returns a CompletedProcess with its output as
    text, as ``run_python`` does."""
    returncode = process.wait(timeout=timeout)
    return subprocess.CompletedProcess(process.args, returncode,
                                       (folder / f"{name}.out").read_text(),
                                       (folder / f"{name}.err").read_text())


@pytest.fixture
def started_early(request):
    """(folder, processes) of the test module's ``start_early``, started after collection."""
    return request.config.stash[_STARTED_EARLY][request.module.__name__]
