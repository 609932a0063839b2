"""pytest-benchmark suite: fastseq vs fastseq.reference (and PyTorch, when it is installed),
measured in one run.

Each workload is checked once against the reference, then timed (compilation happens in the
check, outside the timed region). NumPy's BLAS and PyTorch are limited to fastseq's thread
count for the whole session, so the SGEMM rate, the reference, PyTorch and fastseq all use the
same number of threads. The summary at the end is the table of ``fastseq bench``: per
workload, the median and fastest time, examples/s, GFLOP/s of the fastest call as a share of
the SGEMM rate (the faster of its measurements before and after the workloads), and the
speedups over the reference and PyTorch.
"""

import pytest

import fastseq
from fastseq import benchmarks

TORCH_VERSION = benchmarks.torch_version()

_results = {}  # workload name -> (workload, {side: median seconds per call})
_fastest = {}  # workload name -> fastseq's fastest call, seconds
_sgemm = []  # the session's SGEMM rates (before and after the workloads), for the summary


@pytest.fixture(scope="session", autouse=True)
def same_thread_count():
    with benchmarks.thread_limits(fastseq.get_num_threads(), torch=TORCH_VERSION is not None):
        yield


@pytest.fixture(scope="session")
def sgemm_rate(same_thread_count):
    """The SGEMM rate measured before the workloads (and, for the summary, again after them)."""
    _sgemm.append(benchmarks.sgemm_gflops())
    yield _sgemm[0]
    _sgemm.append(benchmarks.sgemm_gflops())


@pytest.fixture
def measure(benchmark, sgemm_rate):
    """measure(workload, side): side is one of benchmarks.SIDES; fastseq is checked against the reference
    once before it is timed. Timed with pytest-benchmark; the medians (and fastseq's fastest
    call) feed the summary."""

    def run(workload, side):
        if side == "torch":
            if TORCH_VERSION is None:
                pytest.skip("PyTorch is not installed (optional: pip install 'fastseq[torch]')")
            if not hasattr(workload, "torch_setup"):
                pytest.skip("no PyTorch equivalent of this workload")
            fn = workload.torch_setup()
        elif side == "reference":
            if workload.reference is None:
                pytest.skip("no reference for this workload")
            fn = workload.reference
        else:
            workload.check()
            fn = workload.fast
        benchmark.group = workload.name
        benchmarks.quiet()
        single = side == "fastseq" and getattr(workload, "single_run", False)
        benchmark.pedantic(fn, warmup_rounds=0 if single else 1,
                           rounds=1 if single else _rounds(workload), iterations=1)
        if benchmark.stats is None:  # --benchmark-disable: fn ran once, untimed
            return
        seconds, fastest = benchmark.stats.stats.median, benchmark.stats.stats.min
        _results.setdefault(workload.name, (workload, {}))[1][side] = seconds
        if side == "fastseq":
            _fastest[workload.name] = fastest
            _, (row,) = benchmarks.with_sgemm_shares(
                [benchmarks.result_row(workload, {"fastseq": seconds}, fastest)], [sgemm_rate])
            benchmark.extra_info.update(
                {k: row[k] for k in ("examples_per_s", "gflops", "sgemm_share")},
                sgemm_gflops=sgemm_rate, threads=fastseq.get_num_threads())

    return run


def _rounds(workload):
    flops = workload.flops or 0
    return 3 if flops > 1e11 else 5 if flops > 5e9 else 20


def pytest_terminal_summary(terminalreporter):
    shared = {getattr(w, "reference_key", name): seconds["reference"]
              for name, (w, seconds) in _results.items() if "reference" in seconds}
    rows = [benchmarks.result_row(
                workload, dict(seconds, reference=shared.get(
                    getattr(workload, "reference_key", workload.name))), _fastest[name])
            for name, (workload, seconds) in _results.items() if "fastseq" in seconds]
    if rows:
        sgemm_rate, rows = benchmarks.with_sgemm_shares(rows, _sgemm)
        terminalreporter.write_line("")
        terminalreporter.write_line(benchmarks.format_table(
            rows, sgemm_rate, fastseq.get_num_threads(), TORCH_VERSION))
