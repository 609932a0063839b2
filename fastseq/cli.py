"""The ``fastseq`` command: ``train``, ``predict``, ``eval``, ``bench``, ``export`` and ``import``.

    fastseq train [--task addition|date] [--model seq2seq|peeky|attention] [--out DIR] ...
    fastseq predict --params DIR/PeekySeq2seq.pkl "16+75"
    fastseq eval --params DIR/PeekySeq2seq.pkl --data addition.txt
    fastseq bench [--only lstm step decode epoch startup] [--json]
    fastseq export --params DIR/PeekySeq2seq.pkl --to torch model.pt
    fastseq import --from torch model.pt --out DIR

``train`` follows the book's recipes (ch. 7 ``train_seq2seq.py``, ch. 8 ``train.py``): seed the
global RNG, build the model, then per epoch ``Trainer.fit(max_epoch=1)`` and greedy decoding of
the test split. Its output folder holds, after every completed epoch: ``<ModelClass>.pkl`` (the
best epoch's params in the book's pickle format) with ``vocab.json`` and ``settings.json``
beside it (what ``predict`` and ``eval`` need to rebuild the model) and ``history.json``; the
plots ``history.png`` and, for attention models, ``attention.png`` are redrawn after the first
and the last epoch and at most every ``PLOT_INTERVAL`` seconds between, and when a run stops
early. Every file is replaced atomically and Ctrl-C is held back while an epoch's files are
written, so an interrupted run leaves the last completed epoch's files whole.

Exit codes: 0 success, 1 training diverged (or its files could not be written), 2 bad
arguments or input files (one line on stderr, no traceback), 130 interrupted. ``main(argv)``
returns the code instead of exiting, so tests and other tools can call it in-process.

One function per subcommand: ``cmd_<name>(args)``, its options declared by
``add_<name>_parser(subparsers)`` and registered in ``build_parser``.
"""

import argparse
import contextlib
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings

import numpy as np

from . import __version__, datasets, models
from ._files import atomic_write
from .kernels import jit
from .optim import Adam
from .training import (Trainer, TrainingDiverged, _marks, accuracy, decode_examples,
                       generate_batch)

MODELS = {"seq2seq": "Seq2seq", "peeky": "PeekySeq2seq", "attention": "AttentionSeq2seq"}
MODEL_CLASSES = {name: getattr(models, name) for name in MODELS.values()}

# The book's recipes: ch. 7 (addition; peeky + reversed input is its best variant) and ch. 8
# (dates). Every value can be overridden on the command line.
RECIPES = {
    "addition": dict(model="peeky", reverse=True, epochs=25, batch_size=128, hidden=128,
                     wordvec=16, lr=1e-3, max_grad=5.0),
    "date": dict(model="attention", reverse=True, epochs=10, batch_size=128, hidden=256,
                 wordvec=16, lr=1e-3, max_grad=5.0),
}
DATA_SIZE = 50000  # lines generated when no --data file is given (the book's files' size)
SPLIT_SEED = 1984  # the book's load_data seed
EVAL_INTERVAL = 20  # the book's Trainer default: loss_list gets one value per 20 iterations
SHOWN_EXAMPLES = 3  # decoded test questions printed after each epoch
ATTENTION_EXAMPLES = 3  # test questions in attention.png
# Seconds between redraws of the plots: after the first and the last epoch, and after any other
# when this long has passed since the last one. A redraw of history.png costs about 0.13 s,
# which after each of the addition recipe's 2-second epochs made 5% of the run (3.3 s of 61).
PLOT_INTERVAL = 10.0

SETTINGS_FILE, VOCAB_FILE = "settings.json", "vocab.json"
HISTORY_FILE, HISTORY_PLOT, ATTENTION_PLOT = "history.json", "history.png", "attention.png"


class UsageError(Exception):
    """A bad argument or input file: reported as one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with errors raised as UsageError (one line, no usage dump, no sys.exit)."""

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


# ------------------------------------------------------------------------------------------
# Argument types
# ------------------------------------------------------------------------------------------


def _int_at_least(lowest, what):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < lowest or value >= 2**32:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    return parse


positive_int = _int_at_least(1, "a positive integer")
seed_int = _int_at_least(0, "an integer from 0 to 2**32 - 1")


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def max_grad_value(text):
    """A positive number, or 'none' for no clipping."""
    if text.strip().lower() == "none":
        return "none"
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number or 'none' (no clipping), got {text!r}") from None


# ------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------


def _say(quiet, *args):
    if not quiet:
        print(*args, flush=True)


@contextlib.contextmanager
def _preserve_global_rng():
    """The CLI seeds NumPy's global RNG (the book's models draw from it); restore it after, so
    ``main()`` called in-process leaves the caller's RNG as it was."""
    state = np.random.get_state()
    try:
        yield
    finally:
        np.random.set_state(state)


@contextlib.contextmanager
def _hold_interrupt():
    """Hold Ctrl-C (SIGINT) back until the block ends, so a group of files is written in full;
    then deliver it to the previous handler. Only possible in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        if callable(previous):
            previous(signal.SIGINT, None)
        elif previous == signal.SIG_DFL:
            raise KeyboardInterrupt


# Run by _compiling_ahead in a new process: a tiny model of the class being trained (same
# dtype and argument types, so the same compiled kernels) decodes and takes an optimizer step.
_AHEAD_SCRIPT = """
import json
import sys
sys.path[:] = json.loads(sys.argv[2])  # the fastseq of the process that started this one
import numpy as np
import fastseq
model = getattr(fastseq, sys.argv[1])(3, 1, 1)
model.generate(np.zeros((2, 2), np.int64), 0, 1)
for g in model.grads:
    g[...] = 10.0  # a norm above max_grad: clip_grads scales
fastseq.clip_grads(model.grads, 1.0)
fastseq.Adam().update(model.params, model.grads)
"""


def _announce_compiling(quiet, batch_size):
    """One line before a first run with this install, which compiles the kernels first (a
    minute or so without output otherwise): the LSTM kernel batches of this size use is not
    compiled yet."""
    from .kernels.lstm import time_loops
    from .threads import chunks
    forward, _ = time_loops(batch_size, chunks())
    if jit.CACHE_DIR is not None and not jit.has_cached_code(forward):
        _say(quiet, "first run of this install: compiling the kernels for this machine (about a "
                    f"minute, once; later runs load them from {jit.CACHE_DIR})")


@contextlib.contextmanager
def _compiling_ahead(model_class):
    """Compile, in a second process, the kernels a training run needs last (decoding for the
    evaluation, clipping and Adam), while this process compiles the forward and backward
    kernels as it first calls them; both write the kernel cache, where this process then finds
    them. On a fresh install both cores compile and the first epoch ends sooner. Not started
    when decoding is compiled already (for some model) or there is no cache folder."""
    from .kernels.decode import greedy_generate
    if jit.CACHE_DIR is None or jit.has_cached_code(greedy_generate):
        yield
        return
    process = _start_compiling_ahead(model_class)
    try:
        yield
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def _start_compiling_ahead(model_class):
    """The second process of _compiling_ahead. It imports the fastseq this process runs (not
    one found in the current folder, such as a source checkout's) and uses one thread."""
    env = dict(os.environ, NUMBA_NUM_THREADS="1", FASTSEQ_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-c", _AHEAD_SCRIPT, model_class.__name__, json.dumps(sys.path)],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _write_json(path, obj):
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")


def _read_task_file(task, path, limit):
    """The lines of a --data file, checked against the task's format; at most ``limit``."""
    try:
        lines = datasets._read_lines(path)
        datasets.check_task_lines(task, lines, repr(os.fspath(path)))
    except (OSError, ValueError) as e:
        raise UsageError(f"--data: {e}") from None
    return lines[:limit] if limit else lines


# ------------------------------------------------------------------------------------------
# train
# ------------------------------------------------------------------------------------------


def add_train_parser(subparsers):
    p = subparsers.add_parser(
        "train", help="train a model on the addition or date task",
        description="Train one of the book's seq2seq models, evaluating on the test split after "
                    "every epoch. Unset options take the task's recipe from the book: addition = "
                    "peeky, reversed, 25 epochs, batch 128, H=128, D=16, Adam 1e-3, clip 5.0; "
                    "date = attention, reversed, 10 epochs, H=256, the rest the same.")
    p.add_argument("--task", choices=datasets.TASKS, default="addition",
                   help="which data set (default: addition)")
    p.add_argument("--model", choices=list(MODELS),
                   help="seq2seq, peeky or attention (default: the task's recipe)")
    p.add_argument("--reverse", action=argparse.BooleanOptionalAction, default=None,
                   help="feed the questions reversed (default: yes, as in the recipes)")
    p.add_argument("--epochs", type=positive_int, help="number of epochs")
    p.add_argument("--batch-size", type=positive_int, help="examples per batch")
    p.add_argument("--hidden", type=positive_int, help="hidden width H")
    p.add_argument("--wordvec", type=positive_int, help="word vector width D")
    p.add_argument("--lr", type=positive_float, help="Adam learning rate")
    p.add_argument("--max-grad", type=max_grad_value,
                   help="clip gradients to this global norm, or 'none'")
    p.add_argument("--seed", type=seed_int, default=1,
                   help="np.random.seed before building the model and training (default: 1)")
    p.add_argument("--data", metavar="PATH",
                   help="a data file in the book's format (default: generate the task's "
                        f"{DATA_SIZE:,} examples)")
    p.add_argument("--data-seed", type=seed_int, default=0,
                   help="seed of the generated data (default: 0); unused with --data")
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default: runs/<task>-<model>)")
    p.add_argument("--quiet", action="store_true",
                   help="print only the final summary line")
    # Use only the first N examples (before the train/test split): for tests and quick looks.
    p.add_argument("--limit", type=positive_int, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_train)


def _train_settings(args):
    """The recipe of args.task with the options given on the command line applied."""
    s = dict(RECIPES[args.task])
    for key in s:
        value = getattr(args, key)
        if value is not None:
            s[key] = value
    if s["max_grad"] == "none":
        s["max_grad"] = None
    return s


def _load_training_data(args, reverse):
    """(x_train, t_train), (x_test, t_test), vocab for the train command."""
    if args.limit is not None and args.limit < 10:
        raise UsageError("--limit must be at least 10 (the test split is a tenth of the data)")
    try:
        if args.data is not None:
            lines = _read_task_file(args.task, args.data, args.limit)
            return datasets._split_lines(lines, repr(args.data), SPLIT_SEED, reverse)
        return datasets.load_task(args.task, n=args.limit or DATA_SIZE, seed=args.data_seed,
                                  split_seed=SPLIT_SEED, reverse=reverse)
    except ValueError as e:
        raise UsageError(f"{'--data' if args.data else '--limit'}: {e}") from None


def cmd_train(args):
    jit.require_jit("training")  # before anything is written
    s = _train_settings(args)
    out = args.out or os.path.join("runs", f"{args.task}-{s['model']}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out!r} exists and is not a folder")
    (x_train, t_train), (x_test, t_test), vocab = _load_training_data(args, s["reverse"])
    if len(x_test) == 0:
        raise UsageError(f"the data has {len(x_train)} examples, too few for a test split "
                         "(a tenth of the data); use at least 10")
    if s["batch_size"] > len(x_train):
        raise UsageError(f"--batch-size {s['batch_size']} is larger than the "
                         f"{len(x_train)} training examples")
    try:
        os.makedirs(out, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as e:
        raise UsageError(f"--out: cannot write to {out!r}: {e.strerror}") from None

    model_class = MODEL_CLASSES[MODELS[s["model"]]]
    start_id = int(t_train[0, 0])
    settings = {
        "task": args.task, "model": model_class.__name__, "vocab_size": len(vocab),
        "wordvec_size": s["wordvec"], "hidden_size": s["hidden"], "reverse": s["reverse"],
        "question_width": int(x_train.shape[1]), "answer_width": int(t_train.shape[1]),
        "start_id": start_id, "dtype": "float32", "fastseq_version": __version__,
        "training": {
            "epochs": s["epochs"], "batch_size": s["batch_size"], "optimizer": "Adam",
            "lr": s["lr"], "max_grad": s["max_grad"], "seed": args.seed,
            "data": None if args.data is None else os.path.abspath(args.data),
            "data_seed": None if args.data is not None else args.data_seed,
            "examples": len(x_train) + len(x_test), "split_seed": SPLIT_SEED,
        },
    }
    params_path = os.path.join(out, model_class.__name__ + ".pkl")
    quiet = args.quiet
    _say(quiet, f"{args.task}: {len(x_train):,} train / {len(x_test):,} test examples, "
                f"vocabulary {len(vocab)} | {model_class.__name__} D={s['wordvec']} "
                f"H={s['hidden']}{' reversed' if s['reverse'] else ''} | batch {s['batch_size']}"
                f", Adam lr {s['lr']:g}, "
                f"{'no clipping' if s['max_grad'] is None else 'clip %g' % s['max_grad']} | "
                f"seed {args.seed} -> {out}")

    from .plots import HistoryFigure  # matplotlib only when training
    figure = HistoryFigure(f"{model_class.__name__} on {args.task} "
                           f"(D={s['wordvec']}, H={s['hidden']}"
                           f"{', reversed' if s['reverse'] else ''})")
    history, best_epoch, best_acc = [], 0, -1.0
    plotted = {"epoch": 0, "at": 0.0, "attention": None}

    def save_plots():
        """Redraw the plots with every epoch so far (and the last epoch's attention)."""
        figure.update(history, trainer.loss_list, EVAL_INTERVAL, iters_per_epoch)
        figure.save(os.path.join(out, HISTORY_PLOT))
        if plotted["attention"] is not None:
            weights, guessed = plotted["attention"]
            _save_attention(out, weights, x_test, guessed, vocab, s["reverse"])
        plotted.update(epoch=len(history), at=time.perf_counter())

    right, wrong = _marks(sys.stdout)
    iters_per_epoch = len(x_train) // s["batch_size"]
    started = time.perf_counter()
    epoch = 0
    _announce_compiling(quiet, s["batch_size"])
    with _preserve_global_rng(), _compiling_ahead(model_class):
        np.random.seed(args.seed)
        model = model_class(len(vocab), s["wordvec"], s["hidden"])
        trainer = Trainer(model, Adam(lr=s["lr"]))
        try:
            for epoch in range(1, s["epochs"] + 1):
                trainer.fit(x_train, t_train, max_epoch=1, batch_size=s["batch_size"],
                            max_grad=s["max_grad"], eval_interval=EVAL_INTERVAL,
                            progress=False if quiet else None, leave=False)
                t0 = time.perf_counter()
                acc, guesses = accuracy(model, x_test, t_test, return_guesses=True)
                eval_s = time.perf_counter() - t0
                if model_class is models.AttentionSeq2seq:  # weights of that generate call
                    attention = np.stack(model.decoder.attention_weights, axis=1)
                    plotted["attention"] = (attention[:ATTENTION_EXAMPLES], guesses)
                log = trainer.epoch_log[-1]
                history.append({"epoch": epoch, "loss": log["loss"], "val_acc": acc,
                                "train_s": log["train_s"], "eval_s": eval_s,
                                "examples_per_s": log["examples"] / log["train_s"]})
                improved = acc > best_acc
                if improved:
                    best_epoch, best_acc = epoch, acc
                with _hold_interrupt():  # this epoch's files: all or none
                    if improved:
                        model.save_params(params_path)
                        _write_json(os.path.join(out, VOCAB_FILE), vocab.to_dict())
                        _write_json(os.path.join(out, SETTINGS_FILE),
                                    dict(settings, best_epoch=epoch, val_acc=acc))
                    _write_json(os.path.join(out, HISTORY_FILE),
                                {"epochs": history, "best_epoch": best_epoch,
                                 "best_val_acc": best_acc})
                    if epoch in (1, s["epochs"]) \
                            or time.perf_counter() - plotted["at"] >= PLOT_INTERVAL:
                        save_plots()
                row = history[-1]
                _say(quiet, f"epoch {epoch}/{s['epochs']} | loss {row['loss']:.4f} | "
                            f"val acc {100 * acc:.2f}% | {row['examples_per_s']:,.0f} ex/s | "
                            f"eval {eval_s:.2f} s")
                if not quiet:
                    shown = decode_examples(x_test[:SHOWN_EXAMPLES], t_test[:SHOWN_EXAMPLES],
                                            guesses[:SHOWN_EXAMPLES], vocab, s["reverse"])
                    qw = x_test.shape[1]
                    for q, t, g in shown:
                        print(f"    {q:<{qw}}  target {t}  guess {g}  "
                              f"{right if g == t else wrong}", flush=True)
        except TrainingDiverged as e:
            _plots_up_to_date(save_plots, plotted, history)
            print(f"fastseq train: {e}", file=sys.stderr)
            if best_epoch:
                print(f"fastseq train: {out} keeps epoch {best_epoch} "
                      f"(val acc {100 * best_acc:.2f}%)", file=sys.stderr)
            return 1
        except OSError as e:  # e.g. the disk filled up; the files written before are whole
            print(f"fastseq train: error: cannot write to {out}: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            _plots_up_to_date(save_plots, plotted, history)
            kept = (f"{out} holds epoch {best_epoch} (val acc {100 * best_acc:.2f}%)"
                    if best_epoch else f"no epoch finished, nothing written to {out}")
            print(f"\nfastseq train: interrupted in epoch {epoch}; {kept}", file=sys.stderr)
            return 130
    wall = time.perf_counter() - started
    print(f"best val acc {100 * best_acc:.2f}% at epoch {best_epoch}/{s['epochs']} | "
          f"{wall:.1f} s | {params_path}", flush=True)
    return 0


def _plots_up_to_date(save_plots, plotted, history):
    """When training stops early, redraw the plots if epochs finished since the last redraw (a
    second Ctrl-C skips it; each file is replaced whole or not at all)."""
    if plotted["epoch"] < len(history):
        try:
            save_plots()
        except KeyboardInterrupt:
            pass


def _save_attention(out, weights, x_test, guesses, vocab, reverse):
    from .plots import plot_attention
    k = len(weights)
    questions = [vocab.decode(row) for row in x_test[:k]]
    answers = [vocab.decode(row) for row in guesses[:k]]
    plot_attention(weights, questions, answers, os.path.join(out, ATTENTION_PLOT),
                   is_reverse=reverse)


# ------------------------------------------------------------------------------------------
# Loading a trained model (predict, eval)
# ------------------------------------------------------------------------------------------


def _read_json(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UsageError(f"no {os.path.basename(path)} beside the params file ({path}); pass "
                         "a params file written by 'fastseq train', with its folder") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read the {what} {path}: {e}") from None


def _checked_settings(settings, path):
    def fail(why):
        raise UsageError(f"{path}: {why}; was it written by 'fastseq train'?")

    if not isinstance(settings, dict):
        fail("not a JSON object")
    if settings.get("model") not in MODEL_CLASSES:
        fail(f"unknown model {settings.get('model')!r}")
    for key in ("vocab_size", "wordvec_size", "hidden_size", "question_width", "answer_width"):
        value = settings.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            fail(f"{key} must be a positive integer, got {value!r}")
    if settings["answer_width"] < 2:
        fail("answer_width must be at least 2 (the start symbol and one character)")
    if not isinstance(settings.get("reverse"), bool):
        fail(f"reverse must be true or false, got {settings.get('reverse')!r}")
    start_id = settings.get("start_id")
    if isinstance(start_id, bool) or not isinstance(start_id, int) \
            or not 0 <= start_id < settings["vocab_size"]:
        fail(f"start_id must be an id below vocab_size, got {start_id!r}")
    if settings.get("task") not in datasets.TASKS:
        fail(f"unknown task {settings.get('task')!r}")
    return settings


def _checked_vocabulary(obj, settings, vocab_path, settings_path):
    """The Vocabulary saved as ``obj`` (``Vocabulary.to_dict()``), with as many characters as
    the (checked) settings say."""
    try:
        vocab = datasets.Vocabulary.from_dict(obj)
    except ValueError as e:
        raise UsageError(f"{vocab_path}: {e}") from None
    if len(vocab) != settings["vocab_size"]:
        raise UsageError(f"{vocab_path} has {len(vocab)} characters but {settings_path} says "
                         f"vocab_size {settings['vocab_size']}")
    return vocab


def load_trained(params_path):
    """(model, settings, vocab) from a params file and the settings.json / vocab.json beside
    it. Raises UsageError with a one-line reason."""
    folder = os.path.dirname(os.path.abspath(params_path))
    if not os.path.isfile(params_path):
        raise UsageError(f"--params: {params_path!r} is not a file")
    settings_path = os.path.join(folder, SETTINGS_FILE)
    settings = _checked_settings(_read_json(settings_path, "settings"), settings_path)
    vocab_path = os.path.join(folder, VOCAB_FILE)
    vocab = _checked_vocabulary(_read_json(vocab_path, "vocabulary"), settings, vocab_path,
                                settings_path)
    stem = os.path.splitext(os.path.basename(params_path))[0]
    if stem in MODEL_CLASSES and stem != settings["model"]:
        raise UsageError(f"{params_path} is named for a {stem} but {settings_path} describes a "
                         f"{settings['model']}: the settings belong to another run")
    model_class = MODEL_CLASSES[settings["model"]]
    with _preserve_global_rng():  # the constructor draws initial weights
        model = model_class(settings["vocab_size"], settings["wordvec_size"],
                            settings["hidden_size"])
    try:
        model.load_params(params_path)
    except (OSError, ValueError) as e:
        raise UsageError(f"--params: {e}") from None
    return model, settings, vocab


# ------------------------------------------------------------------------------------------
# predict
# ------------------------------------------------------------------------------------------


def add_predict_parser(subparsers):
    p = subparsers.add_parser(
        "predict", help="answer questions with a trained model",
        description="Print the trained model's greedy answer to each question, one per line. "
                    "The vocabulary and settings are read from the params file's folder.")
    p.add_argument("--params", required=True, metavar="FILE",
                   help="params file written by 'fastseq train' (e.g. runs/x/PeekySeq2seq.pkl)")
    p.add_argument("questions", nargs="+", metavar="QUESTION", help='e.g. "16+75"')
    p.set_defaults(func=cmd_predict)


def _encode_questions(questions, settings, vocab):
    width = settings["question_width"]
    rows = []
    for q in questions:
        if not q:
            raise UsageError("a question is empty")
        if len(q) > width:
            raise UsageError(f"question {q!r} has {len(q)} characters; this model reads at most "
                             f"{width}")
        allowed = set(vocab.chars) - {vocab.id_to_char[settings["start_id"]]}
        unknown = sorted(set(q) - allowed)
        if unknown:
            raise UsageError(f"question {q!r} holds {''.join(unknown)!r}; the model knows only "
                             f"{''.join(sorted(allowed))!r}")
        ids = vocab.encode(q.ljust(width))
        rows.append(ids[::-1] if settings["reverse"] else ids)
    return np.array(rows, dtype=np.int64)


def cmd_predict(args):
    model, settings, vocab = load_trained(args.params)
    xs = _encode_questions(args.questions, settings, vocab)
    guesses = generate_batch(model, xs, settings["start_id"], settings["answer_width"] - 1)
    for row in guesses:
        print(vocab.decode(row).strip())
    return 0


# ------------------------------------------------------------------------------------------
# eval
# ------------------------------------------------------------------------------------------


def add_eval_parser(subparsers):
    p = subparsers.add_parser(
        "eval", help="accuracy of a trained model on a data file",
        description="Print the share of the file's questions that the trained model answers "
                    "exactly (greedy decoding), like the book's eval_seq2seq over every line.")
    p.add_argument("--params", required=True, metavar="FILE",
                   help="params file written by 'fastseq train'")
    p.add_argument("--data", required=True, metavar="PATH",
                   help="data file in the book's format, for the model's task")
    p.add_argument("--split", choices=("all", "train", "test"), default="all",
                   help="every line (default), or the train / test split that 'fastseq train' "
                        f"makes of this file (seed {SPLIT_SEED})")
    p.add_argument("--examples", type=_int_at_least(0, "a non-negative integer"), default=0,
                   metavar="K", help="also print the first K questions with their answers")
    p.add_argument("--limit", type=positive_int, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args):
    model, settings, vocab = load_trained(args.params)
    lines = _read_task_file(settings["task"], args.data, args.limit)
    try:
        seed = None if args.split == "all" else SPLIT_SEED
        (x_tr, t_tr), (x_te, t_te), _ = datasets._split_lines(
            lines, repr(args.data), seed, settings["reverse"], vocab)
    except ValueError as e:
        raise UsageError(f"--data: {e}") from None
    if x_tr.shape[1] != settings["question_width"] or t_tr.shape[1] != settings["answer_width"]:
        raise UsageError(f"--data: questions/answers are {x_tr.shape[1]}/{t_tr.shape[1]} "
                         f"characters wide but the model was trained on "
                         f"{settings['question_width']}/{settings['answer_width']}")
    x, t = {"all": (np.concatenate([x_tr, x_te]), np.concatenate([t_tr, t_te])),
            "train": (x_tr, t_tr), "test": (x_te, t_te)}[args.split]
    if len(x) == 0:
        raise UsageError(f"--data: the {args.split} split of {args.data!r} is empty")
    t0 = time.perf_counter()
    acc, guesses = accuracy(model, x, t, return_guesses=True)
    seconds = time.perf_counter() - t0
    if args.examples:
        right, wrong = _marks(sys.stdout)
        k = args.examples
        for q, a, g in decode_examples(x[:k], t[:k], guesses[:k], vocab, settings["reverse"]):
            print(f"{q}  target {a}  guess {g}  {right if a == g else wrong}")
    correct = int(round(acc * len(x)))
    print(f"accuracy {100 * acc:.2f}% ({correct:,}/{len(x):,}) on {args.data} "
          f"[{args.split}] | {seconds:.2f} s")
    return 0


# ------------------------------------------------------------------------------------------
# bench
# ------------------------------------------------------------------------------------------


def add_bench_parser(subparsers):
    from .benchmarks import GROUPS
    p = subparsers.add_parser(
        "bench", help="measure fastseq against the NumPy reference and the machine's limit",
        description="Measure the machine's float32 GEMM rate (a 2048^3 matmul), then time each "
                    "workload with fastseq, with the plain-NumPy reference (fastseq.reference) "
                    "and, when PyTorch is installed, with PyTorch on the same inputs and "
                    "weights, all on the same number of threads. Each workload is checked "
                    "against the reference before it is timed. Prints a Markdown table: median "
                    "and fastest ms per call, examples/s, GFLOP/s and share of the GEMM rate "
                    "(of the fastest call, as the GEMM rate is of the fastest matmul, measured "
                    "before and after the workloads), speedup over the reference and over "
                    "PyTorch (their median time / fastseq's).")
    p.add_argument("--only", nargs="+", choices=GROUPS, metavar="GROUP",
                   help=f"only these workload groups ({', '.join(GROUPS)}; default: all)")
    p.add_argument("--threads", type=positive_int,
                   help="threads for every side (default: fastseq's, FASTSEQ_NUM_THREADS)")
    p.add_argument("--budget", type=positive_float, default=2.0, metavar="SECONDS",
                   help="time spent per workload and side, in three turns after one warm-up call "
                        "(default: 2; at least one timed call)")
    p.add_argument("--no-reference", dest="reference", action="store_false",
                   help="skip timing the NumPy reference (still checked once against it)")
    p.add_argument("--no-torch", dest="torch", action="store_false",
                   help="skip PyTorch even when it is installed")
    p.add_argument("--cold", action="store_true",
                   help="also time the start-up with an empty kernel cache (compiles every "
                        "kernel a training step needs: a minute or more)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args):
    from . import threads
    previous = threads.get_num_threads()
    if args.threads is not None:
        try:
            threads.set_num_threads(args.threads)
        except ValueError as e:
            raise UsageError(f"--threads: {e}") from None
    try:
        return _bench(args, threads.get_num_threads())
    finally:
        threads.set_num_threads(previous)


def _bench(args, n_threads):
    from . import benchmarks
    torch_version = benchmarks.torch_version() if args.torch else None
    groups = args.only or benchmarks.GROUPS
    rows, reference_times = [], {}
    with benchmarks.thread_limits(n_threads, torch=torch_version is not None):
        sgemm_rates = [benchmarks.sgemm_gflops()]
        print(f"SGEMM 2048^3 float32: {sgemm_rates[0]:.1f} GFLOP/s on {n_threads} thread(s)",
              file=sys.stderr, flush=True)
        for group in groups:
            for workload in benchmarks.workloads(group, cold=args.cold):
                row = benchmarks.measure(workload, reference=args.reference,
                                         torch=torch_version is not None, budget=args.budget,
                                         reference_times=reference_times)
                rows.append(row)
                print(f"  {row['workload']}: {row['ms']:,.1f} ms", file=sys.stderr, flush=True)
        sgemm_rates.append(benchmarks.sgemm_gflops())
        print(f"SGEMM 2048^3 float32 after the workloads: {sgemm_rates[1]:.1f} GFLOP/s",
              file=sys.stderr, flush=True)
    sgemm_rate, rows = benchmarks.with_sgemm_shares(rows, sgemm_rates)
    if args.json:
        json.dump({"sgemm_gflops": sgemm_rate, "sgemm_gflops_measured": sgemm_rates,
                   "threads": n_threads, "numpy": np.__version__, "torch": torch_version,
                   "fastseq": __version__, "workloads": rows}, sys.stdout, indent=1)
        print()
    else:
        print(benchmarks.format_table(rows, sgemm_rate, n_threads, torch_version))
    return 0


# ------------------------------------------------------------------------------------------
# export, import (PyTorch)
# ------------------------------------------------------------------------------------------

CHECKPOINT_FORMAT = "fastseq-torch-1"  # the "format" entry of the files 'export' writes


def _interop():
    """fastseq.interop (which imports PyTorch), or a UsageError saying how to install it."""
    try:
        from . import interop
    except ImportError as e:
        raise UsageError(str(e)) from None
    return interop


def add_export_parser(subparsers):
    p = subparsers.add_parser(
        "export", help="save a trained model as a PyTorch checkpoint",
        description="Write a trained model as a PyTorch checkpoint: torch.save of a dict with "
                    "'state_dict' (of fastseq.interop.to_torch(model)), 'settings' and 'vocab' "
                    "(the settings.json and vocab.json of the run), all that is needed to "
                    "rebuild the module with fastseq.interop.TORCH_MODULES[settings['model']] "
                    "or to bring it back with 'fastseq import'. Needs PyTorch "
                    "(pip install 'fastseq[torch]').")
    p.add_argument("--params", required=True, metavar="FILE",
                   help="params file written by 'fastseq train'")
    p.add_argument("--to", required=True, choices=["torch"], help="the framework: torch")
    p.add_argument("out", metavar="OUT.pt", help="the checkpoint file to write")
    p.set_defaults(func=cmd_export)


def cmd_export(args):
    interop = _interop()
    model, settings, vocab = load_trained(args.params)
    checkpoint = {"format": CHECKPOINT_FORMAT, "settings": settings, "vocab": vocab.to_dict(),
                  "state_dict": interop.to_torch(model).state_dict()}
    try:
        with atomic_write(args.out, "wb") as f:
            interop.torch.save(checkpoint, f)
    except OSError as e:
        raise UsageError(f"cannot write {args.out!r}: {e.strerror or e}") from None
    print(f"{args.out}: {settings['model']} (V={settings['vocab_size']}, "
          f"D={settings['wordvec_size']}, H={settings['hidden_size']}) for PyTorch")
    return 0


def add_import_parser(subparsers):
    p = subparsers.add_parser(
        "import", help="bring a PyTorch checkpoint back as a fastseq params file",
        description="Read a checkpoint written by 'fastseq export' (its state_dict may come "
                    "from further training in PyTorch) and write <ModelClass>.pkl, "
                    "settings.json and vocab.json into a folder, for 'fastseq predict' and "
                    "'fastseq eval'. The params file has the book's format, float16. Needs "
                    "PyTorch (pip install 'fastseq[torch]').")
    p.add_argument("--from", dest="source", required=True, choices=["torch"],
                   help="the framework: torch")
    p.add_argument("checkpoint", metavar="IN.pt", help="checkpoint written by 'fastseq export'")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=cmd_import)


def _read_checkpoint(interop, path):
    """(module, settings, vocab) from a checkpoint written by 'fastseq export'. Loaded with
    weights_only=True: a hostile file cannot run code."""
    if not os.path.isfile(path):
        raise UsageError(f"{path!r} is not a file")
    try:
        with warnings.catch_warnings():  # e.g. about the pickle protocol; errors are enough
            warnings.simplefilter("ignore")
            checkpoint = interop.torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError, KeyError,
            IndexError, TypeError, AttributeError) as e:
        raise UsageError(f"{path!r} is not a readable PyTorch checkpoint (truncated, or not "
                         f"written by 'fastseq export'): {type(e).__name__}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(f"{path!r} is a PyTorch file but not a checkpoint written by "
                         f"'fastseq export' (no \"format\": {CHECKPOINT_FORMAT!r})")
    settings = _checked_settings(checkpoint.get("settings"), f"{path} (settings)")
    vocab = _checked_vocabulary(checkpoint.get("vocab"), settings, f"{path} (vocab)",
                                f"{path} (settings)")
    module = interop.TORCH_MODULES[settings["model"]](
        settings["vocab_size"], settings["wordvec_size"], settings["hidden_size"])
    try:
        module.load_state_dict(checkpoint.get("state_dict"))
    except (RuntimeError, TypeError, AttributeError) as e:
        why = str(e).strip().splitlines()[-1].strip()
        raise UsageError(f"{path}: the state_dict does not fit a {settings['model']} with "
                         f"these settings: {why}") from None
    return module, settings, vocab


def cmd_import(args):
    interop = _interop()
    module, settings, vocab = _read_checkpoint(interop, args.checkpoint)
    try:
        model = interop.from_torch(module)
    except ValueError as e:
        raise UsageError(f"{args.checkpoint}: {e}") from None
    out = args.out
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out!r} exists and is not a folder")
    params_path = os.path.join(out, settings["model"] + ".pkl")
    try:
        os.makedirs(out, exist_ok=True)
        with _hold_interrupt():  # all three files or none
            model.save_params(params_path)
            _write_json(os.path.join(out, VOCAB_FILE), vocab.to_dict())
            _write_json(os.path.join(out, SETTINGS_FILE),
                        dict(settings, imported_from=os.path.abspath(args.checkpoint)))
    except OSError as e:
        raise UsageError(f"--out: cannot write to {out!r}: {e.strerror or e}") from None
    print(f"{params_path}: {settings['model']} from {args.checkpoint}")
    return 0


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------


def build_parser():
    parser = _Parser(prog="fastseq", description="Train and use the seq2seq models of 'Deep "
                     "Learning from Scratch 2' (ch. 7-8), compiled with Numba.")
    parser.add_argument("--version", action="version", version=f"fastseq {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                       parser_class=_Parser)
    add_train_parser(subparsers)
    add_predict_parser(subparsers)
    add_eval_parser(subparsers)
    add_bench_parser(subparsers)
    add_export_parser(subparsers)
    add_import_parser(subparsers)
    return parser


def main(argv=None):
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else 0
    try:
        return args.func(args)
    except (UsageError, jit.JITDisabled) as e:
        print(f"fastseq {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
