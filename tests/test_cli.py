"""Tests for the ``fastseq`` command (fastseq.cli), run in-process through ``main(argv)``.

Training runs are tiny (a few hundred generated examples, D=8, H=16) so the whole file takes
seconds; the real recipes are exercised by hand (see the README).
"""

import json
import os
import pickle
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from fastseq import PeekySeq2seq, Trainer, TrainingDiverged, __version__, cli, datasets
from fastseq.plots import HistoryFigure
from fastseq.training import accuracy

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["--epochs", "2", "--limit", "400", "--hidden", "16", "--wordvec", "8",
        "--batch-size", "32", "--quiet"]
HISTORY_KEYS = {"epoch", "loss", "val_acc", "train_s", "eval_s", "examples_per_s"}


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may land in the repository


@pytest.fixture(scope="module")
def addition_run(tmp_path_factory):
    """One tiny addition training run: (output folder, exit code)."""
    out = tmp_path_factory.mktemp("run") / "A"
    code = cli.main(["train", "--task", "addition", "--out", str(out)] + TINY)
    return out, code


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "addition.txt"
    datasets.write_dataset(datasets.generate_addition(200, seed=5), path)
    return path


def run(capsys, *argv):
    """main(argv) -> (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def fresh_model(out):
    settings = json.loads((out / "settings.json").read_text())
    vocab = datasets.Vocabulary.from_dict(json.loads((out / "vocab.json").read_text()))
    model = PeekySeq2seq(settings["vocab_size"], settings["wordvec_size"],
                         settings["hidden_size"])
    model.load_params(str(out / "PeekySeq2seq.pkl"))
    return model, settings, vocab


# ------------------------------------------------------------------------------------------
# train
# ------------------------------------------------------------------------------------------


def test_train_writes_every_file(addition_run):
    out, code = addition_run
    assert code == 0
    assert sorted(os.listdir(out)) == ["PeekySeq2seq.pkl", "history.json", "history.png",
                                       "settings.json", "vocab.json"]  # no temp files left
    assert (out / "history.png").read_bytes()[:8] == PNG_MAGIC
    with open(out / "PeekySeq2seq.pkl", "rb") as f:  # the book's format
        arrays = pickle.load(f)
    assert isinstance(arrays, list) and all(a.dtype == np.float16 for a in arrays)


def test_history_schema(addition_run):
    out, _ = addition_run
    history = json.loads((out / "history.json").read_text())
    rows = history["epochs"]
    assert [row["epoch"] for row in rows] == [1, 2]
    for row in rows:
        assert set(row) == HISTORY_KEYS
        assert 0.0 <= row["val_acc"] <= 1.0
        assert row["loss"] > 0 and row["train_s"] > 0 and row["eval_s"] > 0
        assert row["examples_per_s"] > 0
    accs = [row["val_acc"] for row in rows]
    assert history["best_epoch"] == 1 + int(np.argmax(accs))
    assert history["best_val_acc"] == max(accs)


def test_settings_describe_the_model(addition_run):
    out, _ = addition_run
    settings = json.loads((out / "settings.json").read_text())
    vocab = datasets.Vocabulary.from_dict(json.loads((out / "vocab.json").read_text()))
    assert settings["task"] == "addition" and settings["model"] == "PeekySeq2seq"
    assert (settings["wordvec_size"], settings["hidden_size"]) == (8, 16)
    assert settings["reverse"] is True  # the addition recipe
    assert settings["vocab_size"] == len(vocab) == 13
    assert (settings["question_width"], settings["answer_width"]) == (7, 5)
    assert settings["start_id"] == vocab.char_to_id["_"]
    assert settings["dtype"] == "float32" and settings["fastseq_version"]
    assert settings["training"]["seed"] == 1 and settings["training"]["max_grad"] == 5.0
    history = json.loads((out / "history.json").read_text())
    assert settings["best_epoch"] == history["best_epoch"]


def test_saved_params_reproduce_the_validation_accuracy(addition_run):
    """The params file of the best epoch, loaded into a fresh model, scores what the run
    reported on the same test split (up to the float16 rounding of the file)."""
    out, _ = addition_run
    model, settings, vocab = fresh_model(out)
    _, (xt, tt), data_vocab = datasets.load_task("addition", n=400, seed=0, reverse=True)
    assert data_vocab == vocab
    assert abs(accuracy(model, xt, tt) - settings["val_acc"]) <= 0.05


def test_train_is_deterministic_in_the_seed(tmp_path, addition_run, capsys):
    out, _ = addition_run
    code, _, _ = run(capsys, "train", "--out", tmp_path / "again", *TINY)
    assert code == 0
    assert (tmp_path / "again" / "PeekySeq2seq.pkl").read_bytes() == \
        (out / "PeekySeq2seq.pkl").read_bytes()


def test_train_prints_epochs_and_examples(tmp_path, capsys):
    argv = ["train", "--out", tmp_path / "B", *TINY]
    argv.remove("--quiet")
    code, stdout, _ = run(capsys, *argv)
    assert code == 0
    lines = stdout.splitlines()
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert len(epoch_lines) == 2
    assert re.fullmatch(r"epoch 1/2 \| loss \d+\.\d{4} \| val acc \d+\.\d\d% \| [\d,]+ ex/s \| "
                        r"eval \d+\.\d\d s", epoch_lines[0])
    i = lines.index(epoch_lines[0])
    for example in lines[i + 1:i + 4]:  # three decoded test questions, shown un-reversed
        assert re.match(r"    \d+\+\d+ +target \d+ +guess .* (\u2611|\u2612|O|X)$", example)
    assert lines[-1].startswith("best val acc ")


def test_train_attention_on_dates_writes_a_heatmap(tmp_path, capsys):
    out = tmp_path / "D"
    code, _, _ = run(capsys, "train", "--task", "date", "--out", out, "--epochs", "1",
                     "--limit", "300", "--hidden", "16", "--wordvec", "8", "--batch-size", "32",
                     "--quiet")
    assert code == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["model"] == "AttentionSeq2seq" and settings["question_width"] == 29
    assert (out / "attention.png").read_bytes()[:8] == PNG_MAGIC
    assert (out / "AttentionSeq2seq.pkl").is_file()


def test_train_from_a_data_file(tmp_path, data_file, capsys):
    out = tmp_path / "F"
    code, _, _ = run(capsys, "train", "--data", data_file, "--out", out, "--model", "seq2seq",
                     "--no-reverse", "--epochs", "1", "--hidden", "16", "--wordvec", "8",
                     "--batch-size", "32", "--quiet")
    assert code == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["model"] == "Seq2seq" and settings["reverse"] is False
    assert settings["training"]["data"] == str(data_file)
    assert settings["training"]["examples"] == 200


# ------------------------------------------------------------------------------------------
# predict, eval
# ------------------------------------------------------------------------------------------


def test_predict_prints_the_models_answers(addition_run, capsys):
    out, _ = addition_run
    code, stdout, stderr = run(capsys, "predict", "--params", out / "PeekySeq2seq.pkl",
                               "16+75", "999+999")
    assert code == 0 and stderr == ""
    model, settings, vocab = fresh_model(out)
    expected = []
    for q in ("16+75", "999+999"):
        ids = vocab.encode(q.ljust(7))[::-1].reshape(1, -1)  # the recipe reverses questions
        expected.append(vocab.decode(model.generate(ids, settings["start_id"], 4)).strip())
    assert stdout.splitlines() == expected


def test_eval_prints_the_accuracy_on_a_file(addition_run, data_file, capsys):
    out, _ = addition_run
    code, stdout, _ = run(capsys, "eval", "--params", out / "PeekySeq2seq.pkl",
                          "--data", data_file, "--examples", "2")
    assert code == 0
    *examples, summary = stdout.splitlines()
    assert len(examples) == 2
    m = re.match(r"accuracy (\d+\.\d\d)% \((\d+)/200\) on .* \[all\]", summary)
    assert m
    model, _, vocab = fresh_model(out)
    (x, t), (xt, tt), _ = datasets.load_data(data_file, seed=None, reverse=True, vocab=vocab)
    expected = accuracy(model, np.concatenate([x, xt]), np.concatenate([t, tt]))
    assert m.group(1) == f"{100 * expected:.2f}"
    assert int(m.group(2)) == round(200 * expected)

    code, stdout, _ = run(capsys, "eval", "--params", out / "PeekySeq2seq.pkl",
                          "--data", data_file, "--split", "test")
    assert code == 0 and "(" in stdout and "/20) on" in stdout and "[test]" in stdout


# ------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit code 2, no traceback
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "garbage.txt").write_text("hello world\nfoo\n")
    datasets.write_dataset(datasets.generate_dates(50, seed=1), folder / "dates.txt")
    datasets.write_dataset(["1+1  _2", "22+2 _24"], folder / "ragged.txt")
    (folder / "params.pkl").write_bytes(b"not a pickle")
    return folder


BAD_ARGS = {
    "no command": [],
    "unknown command": ["fly"],
    "unknown task": ["train", "--task", "poems"],
    "unknown model": ["train", "--model", "transformer"],
    "zero epochs": ["train", "--epochs", "0"],
    "negative batch": ["train", "--batch-size", "-3"],
    "word hidden": ["train", "--hidden", "big"],
    "zero wordvec": ["train", "--wordvec", "0"],
    "zero lr": ["train", "--lr", "0"],
    "nan lr": ["train", "--lr", "nan"],
    "negative max-grad": ["train", "--max-grad", "-1"],
    "negative seed": ["train", "--seed", "-1"],
    "missing data": ["train", "--data", "{bad}/missing.txt"],
    "garbage data": ["train", "--data", "{bad}/garbage.txt"],
    "dates as addition": ["train", "--data", "{bad}/dates.txt"],
    "ragged data": ["train", "--data", "{bad}/ragged.txt"],
    "batch above data": ["train", "--limit", "100", "--batch-size", "500"],
    "tiny limit": ["train", "--limit", "5"],
    "out is a file": ["train", "--limit", "100", "--out", "{bad}/garbage.txt"],
    "unknown character": ["predict", "--params", "{run}/PeekySeq2seq.pkl", "16+x"],
    "question too long": ["predict", "--params", "{run}/PeekySeq2seq.pkl", "1234+5678"],
    "start symbol in question": ["predict", "--params", "{run}/PeekySeq2seq.pkl", "1_2"],
    "empty question": ["predict", "--params", "{run}/PeekySeq2seq.pkl", ""],
    "no question": ["predict", "--params", "{run}/PeekySeq2seq.pkl"],
    "missing params": ["predict", "--params", "{bad}/nothing.pkl", "1+1"],
    "no settings beside": ["predict", "--params", "{bad}/params.pkl", "1+1"],
    "eval wrong task": ["eval", "--params", "{run}/PeekySeq2seq.pkl", "--data",
                        "{bad}/dates.txt"],
    "eval no data": ["eval", "--params", "{run}/PeekySeq2seq.pkl"],
}


@pytest.mark.parametrize("argv", BAD_ARGS.values(), ids=BAD_ARGS.keys())
def test_bad_input_exits_2_with_one_line(argv, addition_run, bad_files, capsys):
    out, _ = addition_run
    argv = [a.format(bad=bad_files, run=out) for a in argv]
    code, stdout, stderr = run(capsys, *argv)
    assert code == 2
    assert stdout == ""
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("fastseq") and "error" in stderr and "Traceback" not in stderr


def test_corrupt_params_beside_good_settings(addition_run, tmp_path, capsys):
    out, _ = addition_run
    for name in ("settings.json", "vocab.json"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    (tmp_path / "PeekySeq2seq.pkl").write_bytes(b"\x80\x04truncated")
    code, _, stderr = run(capsys, "predict", "--params", tmp_path / "PeekySeq2seq.pkl", "1+1")
    assert code == 2 and len(stderr.strip().splitlines()) == 1


def test_help_exits_0(capsys):
    assert cli.main(["--help"]) == 0
    assert cli.main(["train", "--help"]) == 0
    assert "--limit" not in capsys.readouterr().out  # a testing aid, hidden from help


def test_python_dash_m_runs_the_command(tmp_path):
    version = subprocess.run([sys.executable, "-m", "fastseq", "--version"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert (version.returncode, version.stdout.strip()) == (0, f"fastseq {__version__}")
    wrong = subprocess.run([sys.executable, "-m", "fastseq", "train", "--task", "nope"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2 and "--task" in wrong.stderr


def test_train_without_the_jit_fails_before_writing_anything(capsys, tmp_path, monkeypatch):
    import numba
    monkeypatch.setattr(numba.config, "DISABLE_JIT", True)
    code, out, err = run(capsys, "train", "--out", tmp_path / "J", *TINY[2:])
    assert code == 2 and out == ""
    assert err.startswith("fastseq train: error: training cannot run with NUMBA_DISABLE_JIT=1")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "J").exists()


def test_main_leaves_the_global_rng_alone(tmp_path, capsys):
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    assert cli.main(["train", "--out", str(tmp_path / "R"), "--epochs", "1", *TINY[2:]]) == 0
    assert np.random.rand() == expected


# The second process of ``fastseq train`` (cli._AHEAD_SCRIPT), then a real run of other sizes:
# prints the signatures the real run added to the kernels that process compiles (none if it
# compiled the right ones), then on a second line how many each had after it.
_AHEAD_CHECK = """
import json
import sys
import numpy as np
import fastseq
from fastseq import cli
from fastseq.kernels.decode import greedy_generate
from fastseq.kernels.optim import adam_update, scale, sum_of_squares
from fastseq.training import accuracy
kernels = [getattr(k, "dispatcher", k) for k in (greedy_generate, adam_update, scale,
                                                 sum_of_squares)]
sys.argv.append(json.dumps(sys.path))
exec(cli._AHEAD_SCRIPT)
ahead = [set(k.signatures) for k in kernels]
model = getattr(fastseq, sys.argv[1])(13, 8, 16)
x, t = np.random.randint(0, 13, (64, 7)), np.random.randint(0, 13, (64, 5))
t[:, 0] = 0  # the start id
fastseq.Trainer(model, fastseq.Adam()).fit(x, t, max_epoch=1, batch_size=32, max_grad=1e-3,
                                           progress=False)
accuracy(model, x, t)
print([sorted(map(str, set(k.signatures) - a)) for k, a in zip(kernels, ahead)])
print([len(a) for a in ahead])
"""


@pytest.mark.parametrize("model", sorted(cli.MODELS.values()))
def test_the_second_process_compiles_what_training_calls_last(run_python, model):
    result = run_python(_AHEAD_CHECK, model)
    assert result.returncode == 0, result.stderr
    added, counts = result.stdout.splitlines()
    assert added == "[[], [], [], []]"
    assert counts == "[1, 1, 1, 1]"


def test_the_second_process_imports_the_running_fastseq(tmp_path, monkeypatch):
    # Started in a source checkout, whose fastseq folder lacks the kernels (installed from the
    # top-level kernels/): the second process must not import that one.
    (tmp_path / "fastseq").mkdir()
    (tmp_path / "fastseq" / "__init__.py").write_text("raise ImportError('the wrong fastseq')")
    monkeypatch.chdir(tmp_path)
    process = cli._start_compiling_ahead(PeekySeq2seq)
    assert process.wait(timeout=600) == 0


def test_the_second_process_ends_with_the_run(tmp_path, monkeypatch):
    from fastseq.kernels import jit
    started = []

    class Recorded(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(jit, "has_cached_code", lambda kernel: False)  # start it anyway
    monkeypatch.setattr(cli.subprocess, "Popen", Recorded)
    assert cli.main(["train", "--out", str(tmp_path / "P"), "--epochs", "1", *TINY[2:]]) == 0
    assert len(started) == 1 and started[0].returncode is not None


@pytest.mark.parametrize("cached", [False, True])
def test_train_says_when_it_compiles_the_kernels_first(capsys, tmp_path, monkeypatch, cached):
    import contextlib
    from fastseq.kernels import jit
    monkeypatch.setattr(jit, "has_cached_code", lambda kernel: cached)
    monkeypatch.setattr(cli, "_compiling_ahead", lambda model_class: contextlib.nullcontext())
    verbose = [a for a in TINY if a != "--quiet"]
    code, out, _ = run(capsys, "train", "--out", tmp_path / "P", "--epochs", "1", *verbose[2:])
    assert code == 0
    notice = f"compiling the kernels for this machine (about a minute, once; later runs load " \
             f"them from {jit.CACHE_DIR})"
    assert (notice in out) is not cached


# ------------------------------------------------------------------------------------------
# Interruption and divergence keep the last completed epoch's files
# ------------------------------------------------------------------------------------------


def failing_fit(monkeypatch, error, on_call):
    """Make Trainer.fit raise ``error`` at its ``on_call``-th call (one call per epoch)."""
    calls = []
    fit = Trainer.fit

    def wrapped(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == on_call:
            raise error
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", wrapped)


def assert_holds_epoch(out, epoch):
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history["epochs"]] == list(range(1, epoch + 1))
    assert json.loads((out / "settings.json").read_text())["best_epoch"] <= epoch
    fresh_model(out)  # the params file loads
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]


def test_ctrl_c_keeps_the_last_completed_epoch(tmp_path, monkeypatch, capsys):
    failing_fit(monkeypatch, KeyboardInterrupt(), on_call=2)
    out = tmp_path / "I"
    code, _, stderr = run(capsys, "train", "--out", out, *TINY)
    assert code == 130
    assert "interrupted" in stderr
    assert_holds_epoch(out, 1)


def test_ctrl_c_while_saving_waits_for_the_files(tmp_path, monkeypatch, capsys):
    """SIGINT arriving while an epoch's files are written is delivered after the last one."""
    write_json = cli._write_json

    def interrupted_write(path, obj):
        if os.path.basename(path) == "vocab.json":
            signal.raise_signal(signal.SIGINT)
        write_json(path, obj)

    monkeypatch.setattr(cli, "_write_json", interrupted_write)
    # Ctrl-C raising KeyboardInterrupt, as in a terminal (a shell's background job, e.g. a CI
    # runner's, inherits SIGINT ignored, and train then rightly carries on)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        out = tmp_path / "S"
        code, _, _ = run(capsys, "train", "--out", out, *TINY)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 130
    assert_holds_epoch(out, 1)  # epoch 1's files, all of them
    assert (out / "history.png").is_file()


def test_divergence_exits_1_and_keeps_the_files(tmp_path, monkeypatch, capsys):
    failing_fit(monkeypatch, TrainingDiverged(2, 5, 10, "the loss is nan"), on_call=2)
    out = tmp_path / "N"
    code, _, stderr = run(capsys, "train", "--out", out, *TINY)
    assert code == 1
    assert "epoch 2, iteration 5/10" in stderr and "Traceback" not in stderr
    assert_holds_epoch(out, 1)


@pytest.mark.parametrize("stop, drawn", [
    (None, [1, 4]),  # the first and the last epoch
    (KeyboardInterrupt(), [1, 2]),  # and the epochs done when a run stops early
    (TrainingDiverged(3, 5, 10, "the loss is nan"), [1, 2]),
])
def test_plots_are_redrawn_after_the_first_and_last_epochs_and_at_most_every_interval(
        tmp_path, monkeypatch, capsys, stop, drawn):
    monkeypatch.setattr(cli, "PLOT_INTERVAL", 1e9)
    if stop is not None:
        failing_fit(monkeypatch, stop, on_call=3)
    saved = []  # the last epoch in history.json at each redraw

    def save(figure, path):
        saved.append(json.loads((tmp_path / "P" / "history.json").read_text())["epochs"][-1]
                     ["epoch"])

    monkeypatch.setattr(HistoryFigure, "save", save)
    argv = ["train", "--out", tmp_path / "P", *TINY]
    argv[argv.index("--epochs") + 1] = "4"
    run(capsys, *argv)
    assert saved == drawn


def test_load_data_with_a_saved_vocabulary(data_file):
    """What eval relies on: a file encoded with the training vocabulary, ids and split as if
    the file had built it, and a clear error for a character the vocabulary lacks."""
    (x, t), (xt, tt), vocab = datasets.load_data(data_file)
    reordered = datasets.Vocabulary(vocab.chars[::-1])
    (x2, t2), (xt2, tt2), got = datasets.load_data(data_file, vocab=reordered)
    assert got is reordered
    for a, b in ((x, x2), (t, t2), (xt, xt2), (tt, tt2)):
        assert [vocab.decode(row) for row in a] == [reordered.decode(row) for row in b]
    lacking = datasets.Vocabulary([c for c in vocab.chars if c != "7"])
    with pytest.raises(ValueError, match=r"line \d+: character '7' .* not in the vocabulary"):
        datasets.load_data(data_file, vocab=lacking)
