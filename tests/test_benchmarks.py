"""The benchmark workloads (fastseq.benchmarks) and the ``fastseq bench`` command: every
workload agrees with the reference, the table's arithmetic is right, and the command's output
is well formed. Nothing here asserts on time: speed is measured by ``fastseq bench`` and
``pytest bench``."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from fastseq import benchmarks, cli


@pytest.fixture(autouse=True)
def no_quiet_pauses(monkeypatch):
    """The pauses between timed sides matter for figures, not for these tests."""
    monkeypatch.setattr(benchmarks, "QUIET_SECONDS", 0.0)


@pytest.mark.parametrize("make", [
    lambda: benchmarks.LSTMStep(6, 3, 4, 5),
    lambda: benchmarks.ModelStep("PeekySeq2seq", N=6),
    lambda: benchmarks.ModelStep("AttentionSeq2seq", N=3),
    lambda: benchmarks.Decode("Seq2seq", questions=12, reference_questions=12),
    lambda: benchmarks.Decode("AttentionSeq2seq", questions=5, batched=False),
], ids=["lstm", "peeky_step", "attention_step", "decode_batched", "decode_one_at_a_time"])
def test_workloads_agree_with_the_reference(make):
    workload = make()
    workload.check()
    assert workload.examples > 0 and workload.reference_examples > 0


def test_epoch_workload_is_the_book_recipe_and_agrees_with_the_reference():
    for driver in ("trainer", "loop"):
        epoch = benchmarks.Epoch(driver)
        assert epoch.iters == 45000 // 128 and epoch.examples == epoch.iters * 128
        assert epoch.reference_key == "PeekySeq2seq epoch"
    epoch.check()
    with pytest.raises(ValueError, match="driver must be 'trainer' or 'loop'"):
        benchmarks.Epoch("adam")


def test_lstm_flops_is_the_book_algorithm():
    # forward: 2 GEMMs of N x (D or H) x 4H per step; backward: 4
    N, T, D, H = 3, 5, 7, 11
    assert benchmarks.lstm_flops(N, T, D, H) == 3 * 2 * N * T * (D + H) * 4 * H


def test_result_row_compares_time_per_example():
    workload = SimpleNamespace(name="w", examples=100, reference_examples=10, flops=4e9)
    row = benchmarks.result_row(workload, {"fastseq": 0.5, "reference": 0.2, "torch": 1.0})
    assert row["ms"] == row["fastest_ms"] == 500 and row["examples_per_s"] == 200
    assert row["gflops"] == pytest.approx(8)
    assert row["speedup"] == pytest.approx((0.2 / 10) / (0.5 / 100))  # 4x per example
    assert row["vs_torch"] == pytest.approx(2)
    # GFLOP/s from the fastest call, as the SGEMM rate; times per example from the median
    fastest = benchmarks.result_row(workload, {"fastseq": 0.5, "reference": 0.2}, 0.25)
    assert fastest["gflops"] == pytest.approx(16)
    assert fastest["ms"] == 500 and fastest["fastest_ms"] == 250
    assert fastest["examples_per_s"] == 200 and fastest["speedup"] == pytest.approx(4)
    bare = benchmarks.result_row(SimpleNamespace(name="s", examples=1, flops=None),
                                 {"fastseq": 1.0})
    assert bare["gflops"] is bare["speedup"] is bare["vs_torch"] is None


def test_sgemm_share_is_of_the_fastest_sgemm_measurement():
    rows = [{"workload": "w", "gflops": 60.0}, {"workload": "decode", "gflops": None}]
    rate, shared = benchmarks.with_sgemm_shares(rows, [100.0, 120.0])
    assert rate == 120.0
    assert shared[0]["sgemm_share"] == pytest.approx(0.5) and shared[1]["sgemm_share"] is None
    assert "sgemm_share" not in rows[0]  # the rows given are left as they were


def test_sides_take_turns_and_share_a_reference_timing():
    """Each side is warmed up once, then timed in ROUNDS turns, each opened by untimed calls,
    the sides alternating, so load that comes and goes falls on every side alike; a reference
    timed for one workload serves the next workload of the same reference_key without running
    again."""
    order = []

    def workload(name):
        return SimpleNamespace(name=name, examples=1, reference_examples=1, flops=None,
                               reference_key="shared", check=lambda: order.append("check"),
                               fast=lambda: order.append(name),
                               reference=lambda: order.append("ref"))

    shared = {}
    row = benchmarks.measure(workload("a"), budget=1e-9, reference_times=shared)
    # one untimed call opens each turn (these calls are quick), then one timed call
    assert order == ["check", "a", "ref"] + ["a", "a", "ref", "ref"] * benchmarks.ROUNDS
    assert row["speedup"] == pytest.approx(shared["shared"] / row["ms"] * 1e3)
    assert 0 < row["fastest_ms"] <= row["ms"]
    order.clear()
    row = benchmarks.measure(workload("b"), budget=1e-9, reference_times=shared)
    assert order == ["check", "b"] + ["b", "b"] * benchmarks.ROUNDS
    assert row["reference_ms"] == pytest.approx(1e3 * shared["shared"])


def test_table_has_a_torch_column_only_with_torch():
    row = benchmarks.result_row(SimpleNamespace(name="w", examples=2, reference_examples=2,
                                                flops=None), {"fastseq": 0.001})
    _, rows = benchmarks.with_sgemm_shares([row], [100.0])
    table = benchmarks.format_table(rows, 100.0, 2)
    lines = table.splitlines()
    assert lines[0].startswith("SGEMM 2048^3 float32: 100.0 GFLOP/s (fastest matmul) | 2 "
                               "thread(s)")
    assert lines[2] == ("| workload | ms (median) | ms (fastest) | examples/s | GFLOP/s (fastest) "
                        "| % SGEMM | vs reference |")
    assert lines[4] == "| w | 1.0 | 1.0 | 2,000 | - | - | - |"
    assert "vs torch" in benchmarks.format_table(rows, 100.0, 2, "2.13.0")


def test_bench_command_prints_json(capsys):
    code = cli.main(["bench", "--only", "step", "--budget", "0.01", "--no-reference",
                     "--no-torch", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sgemm_gflops"] > 0 and report["torch"] is None
    assert report["sgemm_gflops"] == max(report["sgemm_gflops_measured"])  # before and after
    names = [row["workload"] for row in report["workloads"]]
    assert [n.split()[0] for n in names] == list(benchmarks.MODEL_SETTINGS)
    for row in report["workloads"]:
        assert row["ms"] > 0 and 0 < row["sgemm_share"] and row["speedup"] is None


def test_bench_command_prints_a_table(capsys):
    assert cli.main(["bench", "--only", "lstm", "--budget", "0.01", "--no-torch"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].startswith("| workload | ms (median) | ms (fastest) |")
    assert len(out) == 4 + len(benchmarks.LSTM_SHAPES)
    assert all(line.endswith("x |") for line in out[4:])  # a speedup in every row


@pytest.mark.parametrize("argv,message", [
    (["--only", "everything"], "invalid choice: 'everything'"),
    (["--threads", "0"], "expected a positive integer, got '0'"),
    (["--threads", "99"], "--threads: set_num_threads(n): n must be a whole number from 1"),
    (["--budget", "-1"], "expected a positive number, got '-1'"),
])
def test_bench_command_rejects_bad_arguments(argv, message, capsys):
    assert cli.main(["bench"] + argv) == 2
    assert message in capsys.readouterr().err


def test_torch_equivalents_run_on_the_same_inputs():
    pytest.importorskip("torch", reason="PyTorch is optional (pip install 'fastseq[torch]')")
    for workload in (benchmarks.LSTMStep(4, 3, 2, 5), benchmarks.ModelStep("Seq2seq", N=4),
                     benchmarks.Decode("PeekySeq2seq", questions=6)):
        run = workload.torch_setup()
        result = run()
        if isinstance(workload, benchmarks.Decode):
            assert np.array_equal(np.asarray(result), workload.fast())
