"""Training and evaluation with the book's signatures (``common/trainer.py``, ``common/util.py``).

``Trainer(model, optimizer).fit(x, t, max_epoch, batch_size, max_grad, eval_interval)`` trains
any model with the book's surface (``forward(x, t)`` -> loss, ``backward()``, ``params``,
``grads``). It draws the same batches as the book's Trainer for the same ``np.random.seed``:
each epoch permutes the (already permuted) data with the global ``np.random.permutation``.
Instead of the book's printed lines it shows a progress bar (tqdm) with the loss and examples/s,
and it stops with ``TrainingDiverged`` when the loss or the gradient norm stops being finite,
before the optimizer touches the parameters.

``eval_seq2seq`` is the book's one-question check; ``accuracy`` scores many questions with one
batched ``generate`` call; ``decode_examples`` turns ids back into (question, target, guess)
strings for printing.

Shapes: N questions, Tq question length, Ta answer length including the start symbol.
"""

import math
import os
import sys
import time

import numpy as np

from . import _checks as checks
from .optim import clip_grads, remove_duplicate

__all__ = ["Trainer", "TrainingDiverged", "eval_seq2seq", "generate_batch", "accuracy",
           "decode_examples"]

PROGRESS_INTERVAL = 0.25  # seconds between progress-bar refreshes


class TrainingDiverged(FloatingPointError):
    """The loss or the gradient norm became NaN or inf. ``epoch`` and ``iteration`` are 1-based
    (the epoch counts all epochs the Trainer has run); the step was not applied."""

    def __init__(self, epoch, iteration, max_iters, what):
        self.epoch, self.iteration, self.max_iters = epoch, iteration, max_iters
        super().__init__(
            f"training diverged at epoch {epoch}, iteration {iteration}/{max_iters}: {what}; "
            "try a lower learning rate or gradient clipping (max_grad)")


def _whole(name, value, lowest, allow_none=False):
    """value as an int >= lowest (or None when allowed), else ValueError naming it."""
    if allow_none and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lowest:
        kind = "a positive integer" if lowest == 1 else f"an integer >= {lowest}"
        raise ValueError(f"{name} must be {kind}{' or None' if allow_none else ''}, "
                         f"got {value!r}")
    return int(value)


class Trainer:
    """The book's Trainer: ``fit`` trains, ``loss_list`` holds the average loss of every
    ``eval_interval`` iterations, ``plot()`` draws it.

    Additions: ``epoch_log`` (one dict per epoch: ``epoch``, ``loss`` (mean over the epoch),
    ``train_s``, ``examples``) and a progress bar instead of printed lines.
    """

    def __init__(self, model, optimizer):
        self.model = model
        self.optimizer = optimizer
        self.loss_list = []
        self.eval_interval = None
        self.current_epoch = 0
        self.epoch_log = []

    def fit(self, x, t, max_epoch=10, batch_size=32, max_grad=None, eval_interval=20, *,
            progress=None, leave=True):
        """Train for ``max_epoch`` epochs of ``len(x) // batch_size`` batches.

        Every iteration: forward, backward, merge duplicated params, clip the gradients to the
        global norm ``max_grad`` (None: no clipping), update. ``x`` and ``t`` are permuted
        together at the start of each epoch with ``np.random.permutation``, as in the book.
        ``progress``: show a tqdm bar (None: only when stderr is a terminal); ``leave``: keep
        the finished bar on screen. Raises ``TrainingDiverged`` (a FloatingPointError) when the
        loss or the gradient norm is NaN or inf; the parameters then keep their values from
        before that step.
        """
        max_epoch = _whole("max_epoch", max_epoch, 0)
        batch_size = _whole("batch_size", batch_size, 1)
        eval_interval = _whole("eval_interval", eval_interval, 1, allow_none=True)
        max_grad = checks.positive_number("max_grad", max_grad, allow_none=True)
        x, t = np.asarray(x), np.asarray(t)
        if x.ndim == 0 or t.ndim == 0 or len(x) != len(t):
            raise ValueError(f"x and t must be arrays with one row per example and the same "
                             f"number of rows, got shapes {x.shape} and {t.shape}")
        data_size = len(x)
        max_iters = data_size // batch_size
        if max_iters == 0:
            raise ValueError(f"batch_size {batch_size} is larger than the data ({data_size} "
                             "examples); pass a smaller batch_size or more data")

        self.eval_interval = eval_interval
        model, optimizer = self.model, self.optimizer
        params, grads = model.params, model.grads
        # remove_duplicate only has work to do when the model shares a weight (tied
        # embeddings); find that out once instead of comparing every pair at every iteration.
        shared = len(remove_duplicate(params, [g.copy() for g in grads])[0]) < len(params)
        clip_to = math.inf if max_grad is None else max_grad  # inf: only the norm

        bar = _progress_bar(progress, leave, max_epoch * max_iters,
                            f"epoch {self.current_epoch + 1}")
        total_loss, loss_count, done = 0.0, 0, 0
        try:
            for _ in range(max_epoch):
                epoch = self.current_epoch + 1
                if bar is not None:
                    bar.set_description(f"epoch {epoch}", refresh=False)
                start = last_refresh = time.perf_counter()
                epoch_loss = 0.0
                idx = np.random.permutation(np.arange(data_size))
                x, t = x[idx], t[idx]  # one gather per epoch; batches are contiguous slices
                for iters in range(max_iters):
                    lo = iters * batch_size
                    batch_x, batch_t = x[lo:lo + batch_size], t[lo:lo + batch_size]
                    loss = self._forward(batch_x, batch_t, epoch, iters, max_iters)
                    if not math.isfinite(loss):
                        raise TrainingDiverged(epoch, iters + 1, max_iters, f"the loss is {loss}")
                    model.backward()
                    if shared:
                        params, grads = remove_duplicate(model.params, model.grads)
                    norm = clip_grads(grads, clip_to)
                    if not math.isfinite(norm):
                        raise TrainingDiverged(epoch, iters + 1, max_iters,
                                               f"the gradient norm is {norm} (loss {loss:.4g})")
                    optimizer.update(params, grads)

                    total_loss += loss
                    loss_count += 1
                    epoch_loss += loss
                    if eval_interval is not None and iters % eval_interval == 0:
                        self.loss_list.append(total_loss / loss_count)
                        total_loss, loss_count = 0.0, 0
                    if bar is not None:
                        now = time.perf_counter()
                        if now - last_refresh >= PROGRESS_INTERVAL or iters + 1 == max_iters:
                            last_refresh = now
                            rate = (iters + 1) * batch_size / max(now - start, 1e-9)
                            bar.set_postfix_str(f"loss {epoch_loss / (iters + 1):.4f}, "
                                                f"{rate:,.0f} ex/s", refresh=False)
                            bar.update(done + iters + 1 - bar.n)
                done += max_iters
                seconds = time.perf_counter() - start
                self.epoch_log.append({"epoch": epoch, "loss": epoch_loss / max_iters,
                                       "train_s": seconds, "examples": max_iters * batch_size})
                self.current_epoch += 1
        finally:
            if bar is not None:
                bar.close()

    def _forward(self, batch_x, batch_t, epoch, iters, max_iters):
        try:
            return float(self.model.forward(batch_x, batch_t))
        except ValueError as e:
            if not all(np.isfinite(p).all() for p in self.model.params):
                raise TrainingDiverged(epoch, iters + 1, max_iters,
                                       "the parameters hold NaN or inf (the previous update "
                                       "overflowed)") from e
            raise

    def plot(self, ylim=None, path=None):
        """The book's plot: loss vs iterations (x eval_interval). Shown with pyplot, or saved
        to ``path`` (PNG, no display needed) when given."""
        from .plots import plot_loss
        return plot_loss(self.loss_list, self.eval_interval, ylim=ylim, path=path)


def _progress_bar(progress, leave, total, desc):
    """A tqdm bar on stderr, or None: progress False, or None and stderr not a terminal."""
    if progress is False or (progress is None and not _isatty(sys.stderr)):
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="batch", leave=leave, dynamic_ncols=True,
                file=sys.stderr, mininterval=PROGRESS_INTERVAL)


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


# ------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------


def _id_to_char(id_to_char):
    """The book's id_to_char dict, also from a Vocabulary."""
    return getattr(id_to_char, "id_to_char", id_to_char)


def _marks(stream):
    """(right, wrong) markers the stream can print: the book's ballot boxes, else O / X."""
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "\u2611\u2612".encode(encoding)
        return "\u2611", "\u2612"
    except (UnicodeEncodeError, LookupError):
        return "O", "X"


def eval_seq2seq(model, question, correct, id_to_char, verbose=False, is_reverse=False, *,
                 verbos=None):
    """The book's check of one question: 1 if the greedy answer equals the target, else 0.

    question (1,Tq) ids; correct (1,Ta) ids whose first id is the start symbol; greedy-decodes
    Ta-1 ids after it and compares the strings. ``verbose`` prints question (un-reversed when
    ``is_reverse``), target and guess; ``is_reverse`` changes nothing else. ``verbos`` is the
    book's spelling of ``verbose``.
    """
    if verbos is not None:
        verbose = verbos
    id_to_char = _id_to_char(id_to_char)
    question = np.asarray(question)
    if question.ndim == 1:
        question = question.reshape(1, -1)
    if question.ndim != 2 or question.shape[0] != 1:
        raise ValueError(f"eval_seq2seq checks one question of shape (1, Tq), got "
                         f"{question.shape}; use accuracy() for many")
    correct = np.asarray(correct).flatten()
    if correct.size < 2:
        raise ValueError(f"correct must hold the start id and at least one target id, got "
                         f"{correct.size} ids")
    start_id, correct = int(correct[0]), correct[1:]
    guess = model.generate(question, start_id, len(correct))

    question = "".join(id_to_char[int(c)] for c in question.flatten())
    correct = "".join(id_to_char[int(c)] for c in correct)
    guess = "".join(id_to_char[int(c)] for c in np.asarray(guess).flatten())
    if verbose:
        if is_reverse:
            question = question[::-1]
        ok, fail = _marks(sys.stdout)
        colour = _isatty(sys.stdout) and os.name != "nt"
        green, red, end = ("\033[92m", "\033[91m", "\033[0m") if colour else ("", "", "")
        print("Q", question)
        print("T", correct)
        if guess == correct:
            print(green + ok + end + " " + guess)
        else:
            print(red + fail + end + " " + guess)
        print("---")
    return 1 if guess == correct else 0


def generate_batch(model, questions, start_id, sample_size):
    """Greedy answers to all questions (N,Tq) in one ``model.generate`` call, always as an
    int64 array (N, sample_size) (the model returns a list when N is 1)."""
    questions = np.asarray(questions)
    if questions.ndim != 2 or questions.shape[0] == 0:
        raise ValueError(f"questions must be a non-empty (N, Tq) array of ids, got shape "
                         f"{questions.shape}")
    guess = model.generate(questions, start_id, sample_size)
    return np.asarray(guess, dtype=np.int64).reshape(questions.shape[0], sample_size)


def accuracy(model, questions, answers, return_guesses=False):
    """Share of questions (N,Tq) whose greedy answer equals the target, as a float in [0, 1]:
    the mean of ``eval_seq2seq`` over the rows, with one batched ``generate`` call.

    answers (N,Ta) as the book's t arrays: column 0 is the start symbol (the same in every row),
    the rest the target ids. ``return_guesses``: also return the decoded ids (N, Ta-1).
    """
    questions, answers = np.asarray(questions), np.asarray(answers)
    if answers.ndim != 2 or answers.shape[1] < 2 or len(answers) != len(questions):
        raise ValueError(f"answers must be (N, Ta) with Ta >= 2 (the start id, then the target) "
                         f"and one row per question; got {answers.shape} for questions "
                         f"{questions.shape}")
    start_id = answers[0, 0] if answers.size else 0
    if (answers[:, 0] != start_id).any():
        raise ValueError("every answer must start with the same start id (column 0), got "
                         f"{sorted(set(answers[:, 0].tolist()))}")
    guesses = generate_batch(model, questions, int(start_id), answers.shape[1] - 1)
    acc = float(np.mean(np.all(guesses == answers[:, 1:], axis=1)))
    return (acc, guesses) if return_guesses else acc


def decode_examples(questions, answers, guesses, id_to_char, is_reverse=False):
    """Rows of ids -> ``[(question, target, guess), ...]`` strings, the question un-reversed
    when ``is_reverse``, the target without its start symbol. ``answers`` (N,Ta) include the
    start symbol, ``guesses`` (N,Ta-1) do not."""
    id_to_char = _id_to_char(id_to_char)

    def text(ids):
        return "".join(id_to_char[int(i)] for i in ids)

    rows = []
    for q, a, g in zip(np.asarray(questions), np.asarray(answers), np.asarray(guesses)):
        q = text(q[::-1] if is_reverse else q)
        rows.append((q, text(a[1:]), text(g)))
    return rows
