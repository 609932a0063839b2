"""What fastseq's input checks cost (issue 6: no check may cost more than a few percent of a
training step).

One training iteration of PeekySeq2seq at the book's settings (N=128, V=13, D=16, H=128,
questions of 7 steps, answers of 5 with the start symbol; forward, backward, clip_grads, Adam
update, as the Trainer does) is run once with every check function recorded: those of
``fastseq._checks`` and the optimizers' ``_pairs`` / ``_flats``, each call with its arguments.
The benchmark times replaying exactly those calls, and the test reports their share of the
iteration, timed in the same run. Nothing is asserted about time: the machine may be busy.
"""

import contextlib

import numpy as np

from fastseq import Adam, PeekySeq2seq, _checks, clip_grads, optim
from fastseq.benchmarks import median_seconds

N, V, D, H, TQ, TA = 128, 13, 16, 128, 7, 5
MAX_GRAD = 5.0  # the book's clipping for this model


def _check_functions():
    """(module, name) of every check a training iteration may call."""
    found = [(_checks, name) for name, fn in vars(_checks).items()
             if callable(fn) and not name.startswith("_")
             and getattr(fn, "__module__", None) == _checks.__name__]
    return found + [(optim, "_pairs"), (optim, "_flats")]


@contextlib.contextmanager
def recorded_checks():
    """Yields a list that fills with (function, args, kwargs) of every outermost call of a check
    function made inside the block (a check that calls another is recorded once)."""
    calls, depth = [], [0]

    def recorder(fn):
        def call(*args, **kwargs):
            if depth[0] == 0:
                calls.append((fn, args, kwargs))
            depth[0] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1
        return call

    originals = [(module, name, getattr(module, name)) for module, name in _check_functions()]
    try:
        for module, name, fn in originals:
            setattr(module, name, recorder(fn))
        yield calls
    finally:
        for module, name, fn in originals:
            setattr(module, name, fn)


def test_checks_of_a_peeky_training_step(benchmark, capsys):
    state = np.random.get_state()
    try:
        np.random.seed(0)
        model = PeekySeq2seq(V, D, H)
    finally:
        np.random.set_state(state)
    rng = np.random.default_rng(0)
    xs, ts = rng.integers(0, V, (N, TQ))[:, ::-1], rng.integers(0, V, (N, TA))
    optimizer = Adam()

    def training_step():
        model.forward(xs, ts)
        model.backward()
        clip_grads(model.grads, MAX_GRAD)
        optimizer.update(model.params, model.grads)

    training_step()  # compiles the kernels
    with recorded_checks() as calls:
        training_step()

    def replay():
        for fn, args, kwargs in calls:
            fn(*args, **kwargs)

    step_s = median_seconds(training_step, 50, warmup=0)
    benchmark.group = "input checks"
    benchmark.pedantic(replay, warmup_rounds=5, rounds=200, iterations=10)
    # (--benchmark-disable runs replay once and keeps no stats: time it here instead)
    checks_s = benchmark.stats.stats.median if benchmark.stats else median_seconds(replay, 200, warmup=0)
    share = checks_s / step_s
    benchmark.extra_info.update(calls=len(calls), step_s=step_s, share_of_step=share)
    with capsys.disabled():
        print(f"\ninput checks of a PeekySeq2seq training step (N={N}, V={V}, D={D}, H={H}, "
              f"T {TQ}->{TA}): {len(calls)} calls, {checks_s * 1e6:.0f} us = "
              f"{100 * share:.2f}% of the step ({step_s * 1e3:.2f} ms)")
