"""Workloads that measure fastseq against ``fastseq.reference``, shared by ``fastseq bench`` and
the pytest-benchmark suite in ``bench/``.

A workload builds seeded inputs once and offers ``fast()`` (one call of fastseq), ``reference()``
(the same work with the plain NumPy twin), ``check()`` (runs both once and raises
AssertionError unless they agree), ``flops`` (floating-point operations of one call of the
book's algorithm, for GFLOP/s), ``examples`` (sequences per ``fast()`` call, for examples/s)
and ``reference_examples`` (per ``reference()`` call).
Speed is reported as ratios measured in one run: fastseq vs reference, and GFLOP/s vs the
machine's float32 GEMM rate (``sgemm_gflops``).
"""

import time

import numpy as np

from . import layers, models
from . import reference as ref

LSTM_SHAPES = ((128, 7, 16, 128), (128, 4, 144, 128), (128, 29, 16, 256), (20, 35, 650, 650))

# The book's settings: (model, V, D, H, question steps, answer steps incl. the start symbol)
MODEL_SETTINGS = {
    "Seq2seq": ("Seq2seq", 13, 16, 128, 7, 5),
    "PeekySeq2seq": ("PeekySeq2seq", 13, 16, 128, 7, 5),
    "AttentionSeq2seq": ("AttentionSeq2seq", 59, 16, 256, 29, 11),
}


def lstm_flops(N, T, D, H):
    """Forward 2 GEMMs of N x (D+H) x 4H per step, backward twice that: 24 N T H (D+H)."""
    return 24 * N * T * H * (D + H)


def model_step_flops(name, N, V, D, H, Tq, Ta):
    """FLOPs of one forward+backward of a book model on (N,Tq) questions and (N,Ta) answers,
    counting the book's algorithm (matrix products only; the rest is lower order)."""
    Td = Ta - 1
    lstm_in = D + H if name == "PeekySeq2seq" else D
    affine_in = H if name == "Seq2seq" else 2 * H
    flops = lstm_flops(N, Tq, D, H) + lstm_flops(N, Td, lstm_in, H) + 6 * N * Td * affine_in * V
    if name == "AttentionSeq2seq":
        flops += 12 * N * Td * Tq * H  # scores and contexts: 2 GEMMs forward, 4 backward
    return flops


def _assert_close(name, got, want, rtol, atol):
    got, want = np.asarray(got), np.asarray(want)
    if not np.allclose(got, want, rtol=rtol, atol=atol):
        err = np.max(np.abs(got - want))
        raise AssertionError(f"{name}: fastseq and reference differ (max abs error {err:.3g})")


class LSTMStep:
    """TimeLSTM forward + backward at (N,T,D,H), float32, from a zero state."""

    def __init__(self, N, T, D, H, seed=0):
        rng = np.random.default_rng(seed)
        Wx = (rng.standard_normal((D, 4 * H)) / np.sqrt(D)).astype(np.float32)
        Wh = (rng.standard_normal((H, 4 * H)) / np.sqrt(H)).astype(np.float32)
        b = np.zeros(4 * H, np.float32)
        self.xs = rng.standard_normal((N, T, D)).astype(np.float32)
        self.dhs = rng.standard_normal((N, T, H)).astype(np.float32)
        self.fast_layer = layers.TimeLSTM(Wx, Wh, b)
        self.ref_layer = ref.TimeLSTM(Wx.copy(), Wh.copy(), b.copy())
        self.name = f"TimeLSTM fwd+bwd N,T,D,H={N},{T},{D},{H}"
        self.flops = lstm_flops(N, T, D, H)
        self.examples = self.reference_examples = N

    def fast(self):
        self.fast_layer.forward(self.xs)
        return self.fast_layer.backward(self.dhs)

    def reference(self):
        self.ref_layer.forward(self.xs)
        return self.ref_layer.backward(self.dhs)

    def check(self):
        _assert_close("dxs", self.fast(), self.reference(), 1e-4, 1e-5)
        for i, (g, r) in enumerate(zip(self.fast_layer.grads, self.ref_layer.grads)):
            _assert_close(f"grads[{i}]", g, r, 1e-3, 1e-4 * np.abs(r).max())


def _model_pair(name, V, D, H, seed):
    np.random.seed(seed)
    fast = getattr(models, name)(V, D, H)
    np.random.seed(seed)
    reference = getattr(ref, name)(V, D, H)
    return fast, reference


class ModelStep:
    """One training step (forward + backward) of a book model at the book's settings."""

    def __init__(self, name, N=128, seed=0):
        _, V, D, H, Tq, Ta = MODEL_SETTINGS[name]
        rng = np.random.default_rng(seed)
        self.xs = rng.integers(0, V, (N, Tq))
        self.ts = rng.integers(0, V, (N, Ta))
        self.fast_model, self.ref_model = _model_pair(name, V, D, H, seed)
        self.name = f"{name} train step N={N} V={V} D={D} H={H} T={Tq}->{Ta}"
        self.flops = model_step_flops(name, N, V, D, H, Tq, Ta)
        self.examples = self.reference_examples = N

    def fast(self):
        loss = self.fast_model.forward(self.xs, self.ts)
        self.fast_model.backward()
        return loss

    def reference(self):
        loss = self.ref_model.forward(self.xs, self.ts)
        self.ref_model.backward()
        return loss

    def check(self):
        _assert_close("loss", self.fast(), self.reference(), 1e-5, 0)
        for i, (g, r) in enumerate(zip(self.fast_model.grads, self.ref_model.grads)):
            _assert_close(f"grads[{i}]", g, r, 1e-3, 1e-3 * np.abs(r).max())


class Decode:
    """Greedy decoding of ``questions`` questions: fastseq ``batched`` in one call or one question
    at a time; the reference always decodes one at a time, as the book does. ``reference``
    decodes only ``reference_questions`` of them (it is slow); compare per-question times."""

    def __init__(self, name, questions=5000, batched=True, reference_questions=200, seed=0):
        _, V, D, H, Tq, Ta = MODEL_SETTINGS[name]
        rng = np.random.default_rng(seed)
        self.xs = rng.integers(0, V, (questions, Tq))
        self.sample_size = Ta - 1
        self.batched = batched
        self.reference_questions = min(reference_questions, questions)
        self.fast_model, self.ref_model = _model_pair(name, V, D, H, seed)
        self.name = f"{name} greedy decode {questions} questions " + (
            "batched" if batched else "one at a time")
        self.examples = questions
        self.reference_examples = self.reference_questions
        self.flops = None

    def fast(self):
        if self.batched:
            return self.fast_model.generate(self.xs, 0, self.sample_size)
        return [self.fast_model.generate(x[None], 0, self.sample_size) for x in self.xs]

    def reference(self):
        return [self.ref_model.generate(x[None], 0, self.sample_size)
                for x in self.xs[:self.reference_questions]]

    def check(self):
        got = np.asarray(self.fast())[:self.reference_questions]
        want = np.asarray(self.reference())
        if not np.array_equal(got, want):
            rows = int(np.sum(np.any(got != want, axis=1)))
            raise AssertionError(f"decoded ids differ from the reference in {rows} questions")


def sgemm_gflops(n=2048, repeats=5):
    """The machine's float32 matrix-product rate: GFLOP/s of an n^3 NumPy matmul (median)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    return 2 * n ** 3 / median_seconds(lambda: a @ b, repeats) / 1e9


def median_seconds(fn, repeats, warmup=1):
    """Median wall time of fn() over repeats calls, after warmup calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))
