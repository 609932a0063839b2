"""Tests for fastseq.training (Trainer, eval_seq2seq, accuracy, decode_examples) and
fastseq.plots.

The Trainer is checked against the book's training loop written out plainly below
(``book_fit``): same global seed -> same batches, same loss_list, bit-identical params. The
evaluation functions are checked against the book's semantics with a stub model whose answers
are known, and with a real model against its own one-question decoding.
"""

import math
import os

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastseq
from fastseq import Adam, PeekySeq2seq, AttentionSeq2seq, Trainer, TrainingDiverged
from fastseq import datasets, plots
from fastseq.optim import clip_grads, remove_duplicate
from fastseq.training import accuracy, decode_examples, eval_seq2seq, generate_batch

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
D, H = 8, 16  # tiny model: the kernels are the same at any size
BATCH = 32


@pytest.fixture(scope="module")
def data():
    """400 addition examples, questions reversed: 360 train / 40 test, vocabulary of 13."""
    return datasets.load_task("addition", n=400, seed=0, reverse=True)


def make_model(vocab, seed=0, cls=PeekySeq2seq):
    np.random.seed(seed)
    return cls(len(vocab), D, H)


@pytest.fixture(autouse=True)
def keep_global_rng():
    """These tests seed the global RNG as the book does; give it back as it was."""
    state = np.random.get_state()
    yield
    np.random.set_state(state)


def book_fit(model, optimizer, x, t, max_epoch, batch_size, max_grad, eval_interval):
    """The book's Trainer.fit (common/trainer.py), printing left out; returns loss_list."""
    loss_list = []
    data_size = len(x)
    max_iters = data_size // batch_size
    total_loss, loss_count = 0, 0
    for epoch in range(max_epoch):
        idx = np.random.permutation(np.arange(data_size))
        x = x[idx]
        t = t[idx]
        for iters in range(max_iters):
            batch_x = x[iters * batch_size:(iters + 1) * batch_size]
            batch_t = t[iters * batch_size:(iters + 1) * batch_size]
            loss = model.forward(batch_x, batch_t)
            model.backward()
            params, grads = remove_duplicate(model.params, model.grads)
            if max_grad is not None:
                clip_grads(grads, max_grad)
            optimizer.update(params, grads)
            total_loss += loss
            loss_count += 1
            if (eval_interval is not None) and (iters % eval_interval) == 0:
                loss_list.append(float(total_loss / loss_count))
                total_loss, loss_count = 0, 0
    return loss_list


# ------------------------------------------------------------------------------------------
# Trainer
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_grad", [None, 1.0])
def test_fit_matches_the_books_loop(data, max_grad):
    (x, t), _, vocab = data
    model = make_model(vocab)
    initial = [p.copy() for p in model.params]
    np.random.seed(7)
    trainer = Trainer(model, Adam())
    trainer.fit(x, t, max_epoch=2, batch_size=BATCH, max_grad=max_grad, eval_interval=4)

    book_model = make_model(vocab)
    np.random.seed(7)
    book_losses = book_fit(book_model, Adam(), x, t, 2, BATCH, max_grad, 4)

    max_iters = len(x) // BATCH  # 11: records at iterations 0, 4, 8 of each epoch
    assert len(trainer.loss_list) == 2 * math.ceil(max_iters / 4) == len(book_losses)
    assert all(isinstance(v, float) and math.isfinite(v) for v in trainer.loss_list)
    np.testing.assert_allclose(trainer.loss_list, book_losses, rtol=1e-12)
    for p, q, p0 in zip(model.params, book_model.params, initial):
        assert_array_equal(p, q)  # the same batches in the same order
        assert not np.array_equal(p, p0)  # and training did change every parameter
    assert trainer.current_epoch == 2 and trainer.eval_interval == 4
    assert [row["epoch"] for row in trainer.epoch_log] == [1, 2]
    assert all(row["examples"] == max_iters * BATCH and row["train_s"] > 0
               for row in trainer.epoch_log)


def test_shuffling_follows_the_global_seed(data):
    (x, t), _, vocab = data

    def params_after_fit(shuffle_seed):
        model = make_model(vocab)
        np.random.seed(shuffle_seed)
        Trainer(model, Adam()).fit(x, t, max_epoch=1, batch_size=BATCH, eval_interval=None)
        return model.params

    same1, same2, other = params_after_fit(3), params_after_fit(3), params_after_fit(4)
    for a, b in zip(same1, same2):
        assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(same1, other))


def test_epochs_continue_across_fit_calls(data):
    (x, t), _, vocab = data
    trainer = Trainer(make_model(vocab), Adam())
    trainer.fit(x, t, max_epoch=1, batch_size=BATCH, eval_interval=None, progress=False)
    trainer.fit(x, t, max_epoch=1, batch_size=BATCH, eval_interval=None, progress=True,
                leave=False)  # the bar goes to stderr and must not disturb anything
    assert trainer.current_epoch == 2
    assert [row["epoch"] for row in trainer.epoch_log] == [1, 2]
    assert trainer.loss_list == []  # eval_interval=None records nothing, as in the book


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=1000), "larger than the data"),
    (dict(batch_size=0), "batch_size"),
    (dict(eval_interval=0), "eval_interval"),
    (dict(max_grad=-1.0), "max_grad must be a positive number or None, got -1.0"),
    (dict(max_epoch=-1), "max_epoch"),
])
def test_fit_rejects_bad_arguments(data, kwargs, match):
    (x, t), _, vocab = data
    args = dict(max_epoch=1, batch_size=BATCH) | kwargs
    with pytest.raises(ValueError, match=match):
        Trainer(make_model(vocab), Adam()).fit(x, t, **args)


@pytest.mark.parametrize("max_norm", [-1.0, 0, float("nan"), True, "5", None])
def test_clip_grads_rejects_a_max_norm_that_is_not_positive(max_norm):
    """A negative max_norm would flip every gradient (gradient ascent); NaN would never clip."""
    grads = [np.ones((2, 3), np.float32), np.ones(4, np.float32)]
    with pytest.raises(ValueError, match=r"max_norm must be a positive number, got"):
        clip_grads(grads, max_norm)
    assert all((g == 1).all() for g in grads)


def test_fit_rejects_mismatched_rows(data):
    (x, t), _, vocab = data
    with pytest.raises(ValueError, match="same number of rows"):
        Trainer(make_model(vocab), Adam()).fit(x, t[:-1], batch_size=BATCH)


class Poison:
    """Wraps model.forward / model.backward: at call number ``at`` (1-based, counting through
    epochs) snapshot the params, then make the loss NaN or a gradient NaN or inf."""

    def __init__(self, model, at, kind):
        self.model, self.at, self.kind, self.calls = model, at, kind, 0
        self.snapshot = None
        self.forward, self.backward = model.forward, model.backward
        model.forward, model.backward = self.poisoned_forward, self.poisoned_backward

    def poisoned_forward(self, xs, ts):
        self.calls += 1
        loss = self.forward(xs, ts)
        if self.calls == self.at:
            self.snapshot = [p.copy() for p in self.model.params]
            if self.kind == "loss":
                return float("nan")
        return loss

    def poisoned_backward(self, dout=1):
        self.backward(dout)
        if self.calls == self.at and self.kind != "loss":
            self.model.grads[3][0] = np.nan if self.kind == "nan grad" else np.inf


@pytest.mark.parametrize("kind", ["loss", "nan grad", "inf grad"])
@pytest.mark.parametrize("max_grad", [None, 5.0])
@pytest.mark.parametrize("at, epoch, iteration", [(3, 1, 3), (12, 2, 1)])
def test_divergence_stops_before_the_update(data, kind, max_grad, at, epoch, iteration):
    (x, t), _, vocab = data
    model = make_model(vocab)
    poison = Poison(model, at, kind)
    optimizer = Adam()
    trainer = Trainer(model, optimizer)
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit(x, t, max_epoch=3, batch_size=BATCH, max_grad=max_grad, eval_interval=2)
    e = info.value
    assert isinstance(e, FloatingPointError)
    assert (e.epoch, e.iteration, e.max_iters) == (epoch, iteration, len(x) // BATCH)
    assert f"epoch {epoch}, iteration {iteration}/{len(x) // BATCH}" in str(e)
    assert ("loss is nan" if kind == "loss" else "gradient norm is") in str(e)
    for p, before in zip(model.params, poison.snapshot):
        assert_array_equal(p, before)  # the bad step was never applied
    assert optimizer.iter == at - 1


def test_non_finite_params_are_named_as_divergence(data):
    """An update that overflowed shows up as NaN/inf scores in the next forward."""
    (x, t), _, vocab = data
    model = make_model(vocab)
    model.params[-1][0] = np.inf  # the output bias, changed in place as an update would
    with pytest.raises(TrainingDiverged, match="epoch 1, iteration 1/.*NaN or inf"):
        Trainer(model, Adam()).fit(x, t, max_epoch=1, batch_size=BATCH)


def test_unrelated_errors_pass_through(data):
    (x, t), _, vocab = data
    with pytest.raises(ValueError, match="token id"):
        Trainer(make_model(vocab), Adam()).fit(x + 100, t, max_epoch=1, batch_size=BATCH)


def test_plot_writes_a_png_headless(data, tmp_path):
    (x, t), _, vocab = data
    trainer = Trainer(make_model(vocab), Adam())
    trainer.fit(x, t, max_epoch=1, batch_size=BATCH, eval_interval=2)
    path = tmp_path / "loss.png"
    trainer.plot(path=path)
    assert path.read_bytes()[:8] == PNG_MAGIC


# ------------------------------------------------------------------------------------------
# eval_seq2seq, accuracy, decode_examples
# ------------------------------------------------------------------------------------------


class LookupModel:
    """A stub with the book's generate contract: answers from a table (question ids -> answer
    ids); records every call."""

    def __init__(self, table, fallback):
        self.table, self.fallback, self.calls = table, fallback, []

    def generate(self, xs, start_id, sample_size):
        self.calls.append((np.array(xs), start_id, sample_size))
        rows = [list(self.table.get(tuple(q), self.fallback))[:sample_size] for q in xs]
        return rows[0] if len(rows) == 1 else np.array(rows)


@pytest.fixture
def lookup(data):
    """A stub that answers the even test rows right and the odd rows wrong."""
    _, (xt, tt), vocab = data
    wrong = vocab.encode("0   ")
    table = {tuple(q): (a[1:] if i % 2 == 0 else wrong) for i, (q, a) in enumerate(zip(xt, tt))}
    return LookupModel(table, wrong), xt, tt, vocab


def test_eval_seq2seq_semantics(lookup, capsys):
    model, xt, tt, vocab = lookup
    for i in range(4):
        got = eval_seq2seq(model, xt[[i]], tt[[i]], vocab.id_to_char)
        assert got == (1 if i % 2 == 0 else 0)
        xs, start_id, sample_size = model.calls[-1]
        assert start_id == tt[i, 0] == vocab.char_to_id["_"]  # the first id of correct
        assert sample_size == tt.shape[1] - 1
        assert_array_equal(xs, xt[[i]])  # the question as given: never reversed
    assert capsys.readouterr().out == ""  # not verbose: prints nothing


@pytest.mark.parametrize("is_reverse", [False, True])
def test_eval_seq2seq_is_reverse_only_changes_printing(lookup, capsys, is_reverse):
    model, xt, tt, vocab = lookup
    assert eval_seq2seq(model, xt[[0]], tt[[0]], vocab.id_to_char, True, is_reverse) == 1
    assert eval_seq2seq(model, xt[[1]], tt[[1]], vocab, verbos=True,  # the book's spelling
                        is_reverse=is_reverse) == 0
    assert_array_equal(model.calls[0][0], xt[[0]])
    lines = capsys.readouterr().out.splitlines()
    question = vocab.decode(xt[0])
    assert lines[0] == "Q " + (question[::-1] if is_reverse else question)
    assert lines[1] == "T " + vocab.decode(tt[0, 1:])
    assert lines[2].endswith(" " + vocab.decode(tt[0, 1:]))
    assert lines[3] == "---" and lines[7] == "---" and len(lines) == 8


def test_accuracy_is_the_mean_of_eval_seq2seq(lookup):
    model, xt, tt, vocab = lookup
    per_row = [eval_seq2seq(model, xt[[i]], tt[[i]], vocab.id_to_char) for i in range(len(xt))]
    model.calls.clear()
    acc, guesses = accuracy(model, xt, tt, return_guesses=True)
    assert isinstance(acc, float) and acc == np.mean(per_row) == 0.5
    assert len(model.calls) == 1  # one batched generate call
    assert guesses.shape == (len(xt), tt.shape[1] - 1)
    assert accuracy(model, xt, tt) == acc


def test_accuracy_of_a_real_model_equals_eval_seq2seq(data):
    """Targets of half the rows are replaced by the model's own one-question answers, so the
    accuracy is at least 0.5 and must equal the mean of eval_seq2seq."""
    _, (xt, tt), vocab = data
    np.random.seed(0)
    model = AttentionSeq2seq(len(vocab), D, H)
    tt = tt.copy()
    for i in range(0, len(xt), 2):
        tt[i, 1:] = model.generate(xt[[i]], int(tt[i, 0]), tt.shape[1] - 1)
    per_row = [eval_seq2seq(model, xt[[i]], tt[[i]], vocab) for i in range(len(xt))]
    acc = accuracy(model, xt, tt)
    assert acc >= 0.5
    assert acc == np.mean(per_row)
    assert accuracy(model, xt[:1], tt[:1]) == 1.0  # N=1: the model returns a list


def test_accuracy_rejects_bad_answers(lookup):
    model, xt, tt, _ = lookup
    with pytest.raises(ValueError, match="start id"):
        bad = tt.copy()
        bad[1, 0] = bad[0, 0] + 1
        accuracy(model, xt, bad)
    with pytest.raises(ValueError, match="one row per question"):
        accuracy(model, xt, tt[:-1])
    with pytest.raises(ValueError, match="Ta >= 2"):
        accuracy(model, xt, tt[:, :1])


def test_generate_batch_is_always_2d(lookup):
    model, xt, tt, _ = lookup
    assert generate_batch(model, xt[:1], int(tt[0, 0]), 4).shape == (1, 4)
    assert generate_batch(model, xt[:5], int(tt[0, 0]), 4).shape == (5, 4)


def test_decode_examples(data):
    _, (xt, tt), vocab = data
    rows = decode_examples(xt[:2], tt[:2], tt[:2, 1:], vocab, is_reverse=True)
    for (q, target, guess), xq, ta in zip(rows, xt, tt):
        assert q == vocab.decode(xq)[::-1]  # shown un-reversed
        assert "+" in q and not q.startswith(" ")  # reversed, the padding would lead
        assert target == guess == vocab.decode(ta[1:])


# ------------------------------------------------------------------------------------------
# Plots
# ------------------------------------------------------------------------------------------


def test_history_and_attention_pngs(tmp_path):
    rows = [{"epoch": e, "loss": 2.0 / e, "val_acc": e / 4} for e in (1, 2, 3)]
    figure = plots.HistoryFigure("title")
    for n in (1, 2, 3):
        figure.update(rows[:n], [2.5, 2.0, 1.5] * n, 20, 41).save(tmp_path / "h.png")
    plots.plot_history(rows, tmp_path / "h2.png")
    weights = np.random.default_rng(0).dirichlet(np.ones(7), size=(2, 5))  # (K, Ta, Tq)
    plots.plot_attention(weights, ["57+61  ", "1+2    "], ["_118 ", "_3   "],
                         tmp_path / "a.png", is_reverse=True)
    from PIL import Image

    for name in ("h.png", "h2.png", "a.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == PNG_MAGIC
        with Image.open(tmp_path / name) as image:
            assert image.size[0] > 100 and image.size[1] > 100
    assert sorted(os.listdir(tmp_path)) == ["a.png", "h.png", "h2.png"]  # no temp files left
    with pytest.raises(ValueError, match="K questions"):
        plots.plot_attention(weights, ["a"], ["b"], tmp_path / "x.png")


def test_file_plots_leave_pyplot_alone(tmp_path, run_python):
    """Writing PNGs works without a display and neither imports pyplot nor picks a backend."""
    script = (
        "import sys, matplotlib\n"
        "backend = dict.__getitem__(matplotlib.rcParams, 'backend')  # without resolving it\n"
        "from fastseq import plots\n"
        "plots.plot_loss([3, 2, 1], 20, path=sys.argv[1])\n"
        "plots.plot_history([{'epoch': 1, 'loss': 1.0, 'val_acc': 0.5}], sys.argv[1])\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
        "assert dict.__getitem__(matplotlib.rcParams, 'backend') is backend, 'backend changed'\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND")}
    result = run_python(script, str(tmp_path / "p.png"), env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "p.png").read_bytes()[:8] == PNG_MAGIC


def test_package_exports():
    for name in ("Trainer", "TrainingDiverged", "eval_seq2seq", "accuracy"):
        assert hasattr(fastseq, name)
