"""pytest-benchmark suite: fastseq vs fastseq.reference, measured in one run.

Each workload is checked once against the reference, then timed (compilation happens in the
check, outside the timed region). NumPy's BLAS is limited to fastseq's thread count for the
whole session, so the SGEMM rate, the reference and fastseq all use the same number of
threads. The summary at the end gives, per workload, the median times, the speedup over the
reference and GFLOP/s as a share of the SGEMM rate measured at the start of the run.
"""

import pytest
from threadpoolctl import threadpool_limits

import fastseq
from fastseq.benchmarks import sgemm_gflops

_results = {}  # workload name -> {"fastseq": (median s, workload), "reference": ...}


@pytest.fixture(scope="session", autouse=True)
def same_thread_count():
    with threadpool_limits(fastseq.get_num_threads(), user_api="blas"):
        yield


@pytest.fixture(scope="session")
def sgemm_rate(same_thread_count):
    return sgemm_gflops()


@pytest.fixture
def measure(benchmark, sgemm_rate):
    """measure(workload, "fastseq" | "reference"): check once, then time with pytest-benchmark."""

    def run(workload, side):
        if side == "fastseq":
            workload.check()
        fn = workload.fast if side == "fastseq" else workload.reference
        benchmark.group = workload.name
        benchmark.pedantic(fn, warmup_rounds=1, rounds=_rounds(benchmark, workload), iterations=1)
        median = benchmark.stats.stats.median
        examples = workload.examples if side == "fastseq" else workload.reference_examples
        benchmark.extra_info["examples_per_s"] = examples / median
        if workload.flops and side == "fastseq":
            gflops = workload.flops / median / 1e9
            benchmark.extra_info["gflops"] = gflops
            benchmark.extra_info["share_of_sgemm"] = gflops / sgemm_rate
        benchmark.extra_info["sgemm_gflops"] = sgemm_rate
        benchmark.extra_info["threads"] = fastseq.get_num_threads()
        _results.setdefault(workload.name, {})[side] = (median / examples, workload)

    return run


def _rounds(benchmark, workload):
    return 5 if (workload.flops or 0) > 5e9 else 20


def pytest_terminal_summary(terminalreporter):
    if not _results:
        return
    write = terminalreporter.write_line
    write("")
    write(f"fastseq vs reference ({fastseq.get_num_threads()} threads; per example, median)")
    write(f"{'workload':66s} {'fastseq':>11s} {'reference':>11s} {'speedup':>8s} {'GFLOP/s':>8s}")
    for name, sides in _results.items():
        fast = sides.get("fastseq")
        slow = sides.get("reference")
        fast_s = f"{fast[0] * 1e6:9.1f}us" if fast else "-"
        slow_s = f"{slow[0] * 1e6:9.1f}us" if slow else "-"
        ratio = f"{slow[0] / fast[0]:7.2f}x" if fast and slow else "-"
        flops = fast[1].flops if fast else None
        gflops = f"{flops / (fast[0] * fast[1].examples) / 1e9:8.1f}" if flops else "-"
        write(f"{name:66s} {fast_s:>11s} {slow_s:>11s} {ratio:>8s} {gflops:>8s}")
