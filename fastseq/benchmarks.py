"""Workloads that measure fastseq against ``fastseq.reference`` (and PyTorch, when it is
installed), shared by ``fastseq bench`` and the pytest-benchmark suite in ``bench/``.

A workload builds seeded inputs once and offers ``fast()`` (one call of fastseq), ``reference()``
(the same work with the plain NumPy twin), ``check()`` (runs both once and raises
AssertionError unless they agree), ``flops`` (floating-point operations of one call of the
book's algorithm, for GFLOP/s; None when not meaningful), ``examples`` (sequences per
``fast()`` call, for examples/s) and ``reference_examples`` (per ``reference()`` call).
Workloads with a PyTorch equivalent also have ``torch_setup()`` (returns a function doing the
same work with PyTorch on the same inputs and weights; needs ``fastseq.interop``).
Speed is reported as ratios measured in one run: fastseq vs reference (and vs PyTorch), from
median times, and GFLOP/s vs the machine's float32 GEMM rate (``sgemm_gflops``), from the
fastest call of each.
"""

import contextlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from . import datasets, layers, models
from . import reference as ref
from .optim import Adam, clip_grads, remove_duplicate
from .training import Trainer

SIDES = ("fastseq", "reference", "torch")  # what a workload is timed with
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

    def torch_setup(self):
        """torch.nn.LSTM with the same weights: forward, then backward of dhs (dxs included)."""
        import torch
        from .interop import lstm_to_torch
        lstm = lstm_to_torch(self.fast_layer)
        xs = torch.from_numpy(self.xs).requires_grad_()
        dhs = torch.from_numpy(self.dhs)

        def run():
            xs.grad = None
            lstm.zero_grad(set_to_none=True)
            hs, _ = lstm(xs)
            hs.backward(dhs)
        return run


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

    def torch_setup(self):
        """The model exported with ``fastseq.interop.to_torch``: loss, then backward."""
        import torch
        from .interop import to_torch
        module = to_torch(self.fast_model)
        xs, ts = torch.from_numpy(self.xs), torch.from_numpy(self.ts)

        def run():
            module.zero_grad(set_to_none=True)
            module(xs, ts).backward()
        return run


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

    def torch_setup(self):
        """Greedy decoding with the model exported by ``fastseq.interop.to_torch``."""
        import torch
        from .interop import to_torch
        module = to_torch(self.fast_model)
        xs = torch.from_numpy(self.xs)

        def run():
            with torch.no_grad():
                if self.batched:
                    return module.generate(xs, 0, self.sample_size)
                return [module.generate(x[None], 0, self.sample_size) for x in xs]
        return run

    def check(self):
        got = np.asarray(self.fast())[:self.reference_questions]
        want = np.asarray(self.reference())
        if not np.array_equal(got, want):
            rows = int(np.sum(np.any(got != want, axis=1)))
            raise AssertionError(f"decoded ids differ from the reference in {rows} questions")


EPOCH_BATCH, EPOCH_MAX_GRAD = 128, 5.0


def _book_steps(model, optimizer, clip, x, t, batch_size, iters):
    """The book's training iterations: forward, backward, remove_duplicate, clip_grads, update;
    returns the losses."""
    losses = []
    for i in range(iters):
        lo = i * batch_size
        losses.append(float(model.forward(x[lo:lo + batch_size], t[lo:lo + batch_size])))
        model.backward()
        params, grads = remove_duplicate(model.params, model.grads)
        clip(grads, EPOCH_MAX_GRAD)
        optimizer.update(params, grads)
    return losses


class Epoch:
    """One training epoch of PeekySeq2seq on addition at the book's settings (45,000 questions,
    batch 128, Adam, clipping at 5.0), driven by fastseq's ``Trainer`` (``driver="trainer"``) or
    by a book-style loop over ``forward``, ``backward``, ``clip_grads`` and ``Adam.update``
    (``driver="loop"``). The reference runs the book-style loop with the NumPy twin; both
    drivers share its timing (``reference_key``)."""

    def __init__(self, driver="trainer", seed=0):
        if driver not in ("trainer", "loop"):
            raise ValueError(f"driver must be 'trainer' or 'loop', got {driver!r}")
        (self.x, self.t), _, vocab = datasets.load_task("addition", seed=seed, reverse=True)
        V, D, H = self.sizes = len(vocab), 16, 128
        self.fast_model, self.ref_model = _model_pair("PeekySeq2seq", V, D, H, seed)
        self.fast_optimizer, self.ref_optimizer = Adam(), ref.Adam()
        self.driver = driver
        self.iters = len(self.x) // EPOCH_BATCH
        self.name = (f"PeekySeq2seq epoch {len(self.x)} questions batch {EPOCH_BATCH} "
                     f"({'Trainer' if driver == 'trainer' else 'book loop'})")
        self.reference_key = "PeekySeq2seq epoch"
        self.examples = self.reference_examples = self.iters * EPOCH_BATCH
        self.flops = self.iters * model_step_flops("PeekySeq2seq", EPOCH_BATCH, V, D, H,
                                                   self.x.shape[1], self.t.shape[1])

    def fast(self):
        if self.driver == "trainer":
            Trainer(self.fast_model, self.fast_optimizer).fit(
                self.x, self.t, max_epoch=1, batch_size=EPOCH_BATCH, max_grad=EPOCH_MAX_GRAD,
                progress=False)
            return None
        idx = np.random.permutation(len(self.x))
        return _book_steps(self.fast_model, self.fast_optimizer, clip_grads, self.x[idx],
                           self.t[idx], EPOCH_BATCH, self.iters)

    def reference(self):
        idx = np.random.permutation(len(self.x))
        return _book_steps(self.ref_model, self.ref_optimizer, ref.clip_grads, self.x[idx],
                           self.t[idx], EPOCH_BATCH, self.iters)

    def check(self):
        """The first iterations of both loops, from the same weights, give the same losses."""
        fast, reference = _model_pair("PeekySeq2seq", *self.sizes, seed=1)
        got = _book_steps(fast, Adam(), clip_grads, self.x, self.t, EPOCH_BATCH, 3)
        want = _book_steps(reference, ref.Adam(), ref.clip_grads, self.x, self.t, EPOCH_BATCH, 3)
        _assert_close("losses", got, want, 1e-4, 0)


_STARTUP_SCRIPT = """
import numpy as np
import fastseq
np.random.seed(0)
model = fastseq.PeekySeq2seq(13, 16, 128)
xs, ts = np.random.randint(0, 13, (128, 7)), np.random.randint(0, 13, (128, 5))
model.forward(xs, ts)
model.backward()
fastseq.clip_grads(model.grads, 5.0)
fastseq.Adam().update(model.params, model.grads)
"""


class Startup:
    """A new Python process that imports fastseq and takes one PeekySeq2seq training step
    (forward, backward, clip_grads, Adam): what a user's script waits for before training.
    ``cold``: with an empty kernel cache, so every kernel that step needs is compiled."""

    def __init__(self, cold=False):
        self.cold = cold
        self.name = "import fastseq + first PeekySeq2seq step, " + (
            "cold cache (compiles)" if cold else "warm cache")
        self.examples, self.flops, self.reference = 128, None, None
        self.single_run = cold  # each cold run compiles for a minute or more: time one

    def fast(self):
        with tempfile.TemporaryDirectory() as folder:
            env = dict(os.environ)
            if self.cold:
                env["NUMBA_CACHE_DIR"] = folder
            subprocess.run([sys.executable, "-c", _STARTUP_SCRIPT], env=env, cwd=folder,
                           check=True, capture_output=True)

    def check(self):
        if not self.cold:
            self.fast()  # fills the cache that the warm runs read


def torch_version():
    """PyTorch's version when it is installed (for the "vs torch" column), else None."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch
    return torch.__version__


@contextlib.contextmanager
def thread_limits(threads, torch=False):
    """NumPy's BLAS (the reference, the SGEMM rate) and, with ``torch``, PyTorch on ``threads``
    threads, as fastseq's kernels: every side of a comparison uses the same cores."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(threads, user_api="blas"):
        if not torch:
            yield
            return
        import torch as torch_module
        previous = torch_module.get_num_threads()
        torch_module.set_num_threads(threads)
        try:
            yield
        finally:
            torch_module.set_num_threads(previous)


GROUPS = ("lstm", "step", "decode", "epoch", "startup")


def workloads(group, cold=False):
    """The workloads of a group of GROUPS; ``cold`` adds the cold-cache start-up."""
    if group == "lstm":
        return [LSTMStep(*shape) for shape in LSTM_SHAPES]
    if group == "step":
        return [ModelStep(name) for name in MODEL_SETTINGS]
    if group == "decode":
        return [Decode(name, batched=batched) for batched in (True, False)
                for name in MODEL_SETTINGS]
    if group == "epoch":
        return [Epoch("trainer"), Epoch("loop")]
    if group == "startup":
        return [Startup()] + ([Startup(cold=True)] if cold else [])
    raise ValueError(f"unknown workload group {group!r}; valid groups: {', '.join(GROUPS)}")


def measure(workload, *, reference=True, torch=False, budget=2.0, reference_times=None):
    """Check the workload, then time fastseq (and the reference, and PyTorch when ``torch`` and
    the workload has an equivalent) for about ``budget`` seconds each, the sides taking turns
    (``interleaved_times``); returns its table row. ``reference_times`` (a dict) shares
    reference timings between workloads of the same ``reference_key``."""
    workload.check()
    if getattr(workload, "single_run", False):
        quiet()
        return result_row(workload, {"fastseq": median_seconds(workload.fast, 1, warmup=0)})
    reference_times = {} if reference_times is None else reference_times
    key = getattr(workload, "reference_key", workload.name)
    sides = {"fastseq": workload.fast}
    if reference and workload.reference is not None and key not in reference_times:
        sides["reference"] = workload.reference
    if torch and hasattr(workload, "torch_setup"):
        sides["torch"] = workload.torch_setup()
    times = interleaved_times(sides, budget)
    seconds = {name: float(np.median(t)) for name, t in times.items()}
    if "reference" in sides:
        reference_times[key] = seconds["reference"]
    if reference and workload.reference is not None:
        seconds["reference"] = reference_times[key]
    return result_row(workload, seconds, fastest=min(times["fastseq"]))


# Turns per side in interleaved_times, and the most calls a side makes in all its turns.
ROUNDS, MAX_CALLS = 3, 60
# Untimed calls open each turn for about this long, when calls are shorter: after the quiet
# pause the first calls run slower while sleeping threads wake and caches fill (measured,
# TimeLSTM fwd+bwd at (128,7,16,128): 5-9 ms for the first five calls after a 1 s pause, a
# median of 4.2-4.9 ms after them).
TURN_WARMUP_SECONDS = 0.05


def interleaved_times(sides, budget):
    """Wall time of each timed call of each function of ``sides`` (name -> list of seconds):
    one warm-up call each, then ROUNDS turns per side, the sides taking turns, each turn after a
    quiet pause and untimed calls for about TURN_WARMUP_SECONDS (as many as are timed, at
    most), timing as many calls as fit in about budget / ROUNDS seconds (at least one). On a
    shared machine, load that comes and goes during a workload then falls on every side alike,
    and the ratios between sides hold better than when each side is timed in one stretch."""
    calls, warmups = {}, {}
    for name, fn in sides.items():
        start = time.perf_counter()
        fn()
        first = max(time.perf_counter() - start, 1e-9)
        calls[name] = int(min(MAX_CALLS // ROUNDS, max(1, budget / ROUNDS // first)))
        warmups[name] = int(min(calls[name], TURN_WARMUP_SECONDS // first))
    times = {name: [] for name in sides}
    for _ in range(ROUNDS):
        for name, fn in sides.items():
            quiet()
            times[name] += call_seconds(fn, calls[name], warmup=warmups[name])
    return times


# After a multithreaded NumPy matrix product, NumPy's OpenBLAS threads keep spinning for a
# while, and fastseq's kernels run at about half speed until they stop (measured: TimeLSTM
# fwd+bwd at (128,7,16,128) 8 ms per call for the first 100+ ms after the reference ran, 4 ms
# after a pause of 0.5-1 s). Each side is therefore timed after a quiet pause.
QUIET_SECONDS = 1.0


def quiet():
    """Wait until threads left spinning by the previous side's work have gone to sleep."""
    time.sleep(QUIET_SECONDS)


def sgemm_gflops(n=2048, repeats=10):
    """The machine's float32 matrix-product rate: GFLOP/s of the fastest of ``repeats`` n^3
    NumPy matmuls (the limit the kernels are compared with; on a shared machine the median
    varied from 116 to 179 GFLOP/s between runs). A run measures it before and after its
    workloads and keeps the faster (``with_sgemm_shares``)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    return 2 * n ** 3 / min(call_seconds(lambda: a @ b, repeats)) / 1e9


def call_seconds(fn, repeats, warmup=1):
    """Wall time of each of ``repeats`` calls of fn(), after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_seconds(fn, repeats, warmup=1):
    """Median wall time of fn() over repeats calls, after warmup calls."""
    return float(np.median(call_seconds(fn, repeats, warmup)))


def result_row(workload, seconds, fastest=None):
    """One table row from the median seconds per call of each side that ran: ``seconds`` maps
    "fastseq" (required), "reference" and "torch" to a time or None; ``fastest`` is fastseq's
    fastest call (default: its median). Speedups compare time per example (the reference of a
    decode workload decodes fewer questions). GFLOP/s come from the fastest call, as the SGEMM
    rate does from the fastest matmul: both then estimate the machine without other processes'
    load, which on a shared machine slows the median of either by a varying amount."""
    fast = seconds["fastseq"]
    fastest = fast if fastest is None else fastest
    per_example = fast / workload.examples
    reference, torch = seconds.get("reference"), seconds.get("torch")
    return {
        "workload": workload.name,
        "ms": 1e3 * fast,
        "fastest_ms": 1e3 * fastest,
        "examples_per_s": workload.examples / fast,
        "gflops": workload.flops / fastest / 1e9 if workload.flops else None,
        "reference_ms": None if reference is None else 1e3 * reference,
        "speedup": None if reference is None
        else reference / workload.reference_examples / per_example,
        "torch_ms": None if torch is None else 1e3 * torch,
        "vs_torch": None if torch is None else torch / fast,
    }


def with_sgemm_shares(rows, sgemm_rates):
    """The run's SGEMM rate, the fastest of ``sgemm_rates`` (measured before and after the
    workloads: load that comes and goes on a shared machine can slow one of them), and the rows
    with "sgemm_share", their GFLOP/s as a share of it."""
    rate = max(sgemm_rates)
    return rate, [dict(row, sgemm_share=row["gflops"] / rate if row["gflops"] else None)
                  for row in rows]


_COLUMNS = (  # (heading, row key, format)
    ("workload", "workload", "{}"), ("ms (median)", "ms", "{:,.1f}"),
    ("ms (fastest)", "fastest_ms", "{:,.1f}"), ("examples/s", "examples_per_s", "{:,.0f}"),
    ("GFLOP/s (fastest)", "gflops", "{:.1f}"), ("% SGEMM", "sgemm_share", "{:.0%}"),
    ("vs reference", "speedup", "{:.2f}x"), ("vs torch", "vs_torch", "{:.2f}x"))


def format_table(rows, sgemm_rate, threads, torch_version=None):
    """The rows (with their SGEMM shares, ``with_sgemm_shares``) as a Markdown table, headed by
    the machine's SGEMM rate."""
    columns = [c for c in _COLUMNS if c[1] != "vs_torch" or torch_version]
    lines = [f"SGEMM 2048^3 float32: {sgemm_rate:.1f} GFLOP/s (fastest matmul) | {threads} "
             f"thread(s) | numpy {np.__version__}"
             + (f" | torch {torch_version}" if torch_version else ""), "",
             "| " + " | ".join(h for h, _, _ in columns) + " |",
             "|" + "|".join("---" if k == "workload" else "---:" for _, k, _ in columns) + "|"]
    for row in rows:
        cells = ["-" if row.get(k) is None else fmt.format(row[k]) for _, k, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
