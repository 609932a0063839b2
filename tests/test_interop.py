"""fastseq.interop and ``fastseq export`` / ``fastseq import``: moving models to PyTorch and back.

Shapes: N batch, Ts question steps, Td decoder steps (ts has Td+1 columns), D word-vector width,
H hidden width, V vocabulary, S sample_size.

PyTorch is an independent implementation of the same maths, so besides checking the
conversions (bit-identical round trips) these tests check fastseq's losses and gradients against
torch.autograd. The gate reorder is re-derived here from the documented layouts (book: columns
f, g, i, o of x@Wx; PyTorch: rows i, f, g, o of weight_ih_l0), not taken from fastseq.interop.
"""
import json

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

torch = pytest.importorskip("torch", reason="PyTorch is an optional extra: "
                                            "pip install 'fastseq[torch]'")

import fastseq  # noqa: E402
import fastseq.reference as reference  # noqa: E402
from conftest import DTYPES, assert_close, tolerances  # noqa: E402
from fastseq import cli, interop  # noqa: E402
from fastseq._files import load_arrays  # noqa: E402

MODELS = ["Seq2seq", "PeekySeq2seq", "AttentionSeq2seq"]
V, D, H = 11, 5, 6
N, Ts, Td, S = 3, 5, 4, 6
START_ID = 3
SEED = 1984
LOSS_RTOL = 1e-5  # fastseq vs PyTorch: the same loss up to float rounding (issue 7)
SGD_LR = 0.5  # large enough that one step changes the loss well beyond LOSS_RTOL
TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


@pytest.fixture(autouse=True)
def keep_global_rng():
    """The models draw their weights from the global RNG, as the book's; give it back."""
    state = np.random.get_state()
    yield
    np.random.set_state(state)


def make_model(name, dtype, rng):
    """A fastseq model with random weights and biases (the book's initial embedding, randn/100,
    makes the scores nearly equal and the greedy ids fragile)."""
    np.random.seed(SEED)
    model = getattr(fastseq, name)(V, D, H, dtype=dtype)
    for p in model.params:
        p[...] = 0.5 * rng.standard_normal(p.shape)
    return model


def batch(rng):
    """Questions (N,Ts) as the book's reversed view, answers (N,Td+1) after the start id."""
    xs = rng.integers(0, V, (N, Ts))[:, ::-1]
    ts = rng.integers(0, V, (N, Td + 1))
    ts[:, 0] = START_ID
    return xs, ts


def torch_ids(ids):
    return torch.from_numpy(np.ascontiguousarray(ids))


def book_gates(W, H):
    """PyTorch's (4H, ...) gate rows i, f, g, o -> the book's (..., 4H) columns f, g, i, o."""
    i, f, g, o = W[:H], W[H:2 * H], W[2 * H:3 * H], W[3 * H:]
    return np.concatenate([f, g, i, o]).T


def book_lstm_grads(nn_lstm):
    """dWx, dWh, db of the book's layout from an nn.LSTM's .grad (bias_hh is frozen)."""
    H = nn_lstm.hidden_size
    return [book_gates(nn_lstm.weight_ih_l0.grad.numpy(), H),
            book_gates(nn_lstm.weight_hh_l0.grad.numpy(), H),
            book_gates(nn_lstm.bias_ih_l0.grad.numpy(), H)]


def book_grads(module):
    """The module's gradients in the order and layout of the fastseq model's grads."""
    return [module.encoder_embed.weight.grad.numpy(), *book_lstm_grads(module.encoder_lstm),
            module.decoder_embed.weight.grad.numpy(), *book_lstm_grads(module.decoder_lstm),
            module.decoder_affine.weight.grad.numpy().T,
            module.decoder_affine.bias.grad.numpy()]


def assert_same_params(got, want):
    assert type(got) is type(want)
    assert len(got.params) == len(want.params)
    for i, (g, w) in enumerate(zip(got.params, want.params)):
        assert g.dtype == w.dtype and g.flags.c_contiguous, f"params[{i}]"
        assert_array_equal(g, w, err_msg=f"params[{i}]", strict=True)


# ------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", MODELS)
def test_same_loss_and_generation(name, dtype, rng):
    model = make_model(name, dtype, rng)
    xs, ts = batch(rng)
    module = interop.to_torch(model)
    assert isinstance(module, interop.TORCH_MODULES[name])
    assert {p.dtype for p in module.parameters()} == {TORCH_DTYPES[np.dtype(dtype)]}
    assert {type(m) for m in module.children()} == {torch.nn.Embedding, torch.nn.LSTM,
                                                    torch.nn.Linear}
    assert all(lstm.batch_first for lstm in (module.encoder_lstm, module.decoder_lstm))

    want = model.forward(xs, ts)
    got = module(xs, ts)  # NumPy ids (a reversed view) are accepted...
    assert got.dtype == TORCH_DTYPES[np.dtype(dtype)] and got.ndim == 0
    assert_allclose(got.item(), want, rtol=LOSS_RTOL)
    assert module(torch_ids(xs), torch_ids(ts)).item() == got.item()  # ...as are tensors

    ids = module.generate(xs, START_ID, S)
    assert ids.dtype == torch.int64 and ids.shape == (N, S)
    assert_array_equal(ids.numpy(), model.generate(xs, START_ID, S))
    assert module.generate(xs[:1], START_ID, S)[0].tolist() == model.generate(xs[:1], START_ID, S)
    assert module.generate(xs, START_ID, 0).shape == (N, 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", MODELS)
def test_round_trip_is_bit_identical(name, dtype, rng):
    model = make_model(name, dtype, rng)
    module = interop.to_torch(model)
    np.random.seed(5)
    rng_state = np.random.get_state()[1].copy()
    back = interop.from_torch(module)
    assert_array_equal(np.random.get_state()[1], rng_state)  # from_torch drew nothing
    assert_same_params(back, model)
    assert not any(np.shares_memory(p, q) for p in back.params for q in model.params)
    # one trainable tensor per fastseq param: bias_hh is zero and frozen, as the book has one
    trainable = [p for p in module.parameters() if p.requires_grad]
    assert len(trainable) == len(model.params)
    for lstm in (module.encoder_lstm, module.decoder_lstm):
        assert not lstm.bias_hh_l0.requires_grad and not lstm.bias_hh_l0.any()


@pytest.mark.parametrize("name", MODELS)
def test_from_torch_sums_the_two_lstm_biases(name, rng):
    """A module trained with bias_hh unfrozen (any nn.LSTM) converts to the same model."""
    model = make_model(name, np.float64, rng)
    xs, ts = batch(rng)
    module = interop.to_torch(model)
    with torch.no_grad():
        for lstm in (module.encoder_lstm, module.decoder_lstm):
            lstm.bias_hh_l0.copy_(torch.from_numpy(rng.standard_normal(4 * H)))
    back = interop.from_torch(module)
    rtol, atol = tolerances(np.float64)
    assert_allclose(back.forward(xs, ts), module(xs, ts).item(), rtol=rtol, atol=atol)
    assert_array_equal(back.generate(xs, START_ID, S), module.generate(xs, START_ID, S).numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", MODELS)
def test_same_gradients_and_loss_after_one_sgd_step(name, dtype, rng):
    """Each framework takes one SGD step with its own gradients; the gradients (mapped to the
    book's layout) and the new losses agree."""
    model = make_model(name, dtype, rng)
    xs, ts = batch(rng)
    module = interop.to_torch(model)

    loss_before = model.forward(xs, ts)
    model.backward()
    module(xs, ts).backward()
    for i, (got, want) in enumerate(zip(book_grads(module), model.grads, strict=True)):
        assert_close(got, want, dtype, err_msg=f"grads[{i}]")

    fastseq.SGD(lr=SGD_LR).update(model.params, model.grads)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p -= SGD_LR * p.grad
    want = model.forward(xs, ts)
    assert want < loss_before * (1 - 100 * LOSS_RTOL)  # the step did something
    assert_allclose(module(xs, ts).item(), want, rtol=LOSS_RTOL)
    for i, (got, new) in enumerate(zip(interop.from_torch(module).params, model.params)):
        assert_close(got, new, dtype, err_msg=f"params[{i}] after the step")


# ------------------------------------------------------------------------------------------
# A single TimeLSTM
# ------------------------------------------------------------------------------------------

LSTM_D = 4  # D != H


def make_time_lstm(dtype, rng, stateful=False):
    Wx, Wh, b = (0.5 * rng.standard_normal(shape).astype(dtype)
                 for shape in ((LSTM_D, 4 * H), (H, 4 * H), (4 * H,)))
    return fastseq.TimeLSTM(Wx, Wh, b, stateful=stateful)


@pytest.mark.parametrize("stateful", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_lstm_round_trip_is_bit_identical(dtype, stateful, rng):
    time_lstm = make_time_lstm(dtype, rng)
    nn_lstm = interop.lstm_to_torch(time_lstm)
    assert isinstance(nn_lstm, torch.nn.LSTM) and nn_lstm.batch_first
    assert (nn_lstm.input_size, nn_lstm.hidden_size, nn_lstm.num_layers) == (LSTM_D, H, 1)
    assert nn_lstm.weight_ih_l0.dtype == TORCH_DTYPES[np.dtype(dtype)]
    back = interop.lstm_from_torch(nn_lstm, stateful=stateful)
    assert isinstance(back, fastseq.TimeLSTM) and back.stateful is stateful
    for name, got, want in zip(("Wx", "Wh", "b"), back.params, time_lstm.params, strict=True):
        assert_array_equal(got, want, err_msg=name, strict=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lstm_outputs_and_gradients_match(dtype, rng):
    """TimeLSTM forward/backward vs nn.LSTM + autograd, loss = sum(hs * dhs)."""
    time_lstm = make_time_lstm(dtype, rng)
    nn_lstm = interop.lstm_to_torch(time_lstm)
    xs = rng.standard_normal((N, Ts, LSTM_D)).astype(dtype)
    dhs = rng.standard_normal((N, Ts, H)).astype(dtype)

    hs = time_lstm.forward(xs)
    dxs = time_lstm.backward(dhs)
    xs_t = torch.from_numpy(xs).requires_grad_()
    hs_t, (h_t, c_t) = nn_lstm(xs_t)
    (hs_t * torch.from_numpy(dhs)).sum().backward()

    assert_close(hs_t.detach().numpy(), hs, dtype, err_msg="hs")
    assert_close(h_t[0].detach().numpy(), time_lstm.h, dtype, err_msg="last h")
    assert_close(c_t[0].detach().numpy(), time_lstm.c, dtype, err_msg="last c")
    assert_close(xs_t.grad.numpy(), dxs, dtype, err_msg="dxs")
    for name, got, want in zip(("dWx", "dWh", "db"), book_lstm_grads(nn_lstm),
                               time_lstm.grads, strict=True):
        assert_close(got, want, dtype, err_msg=name)


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_from_any_nn_lstm(bias, rng):
    """An nn.LSTM as PyTorch initialises it (two non-zero biases, or none) computes what the
    converted TimeLSTM computes."""
    torch.manual_seed(0)
    nn_lstm = torch.nn.LSTM(LSTM_D, H, batch_first=True, bias=bias, dtype=torch.float64)
    time_lstm = interop.lstm_from_torch(nn_lstm)
    xs = rng.standard_normal((N, Ts, LSTM_D))
    with torch.no_grad():
        want = nn_lstm(torch.from_numpy(xs))[0].numpy()
    assert_close(time_lstm.forward(xs), want, np.float64)


UNSUPPORTED_LSTMS = {
    "num_layers": dict(num_layers=2),
    "bidirectional": dict(bidirectional=True),
    "batch_first": dict(batch_first=False),
    "proj_size": dict(proj_size=2),
}


@pytest.mark.parametrize("what", list(UNSUPPORTED_LSTMS))
def test_lstm_from_torch_rejects_what_timelstm_cannot_hold(what):
    kwargs = dict(batch_first=True) | UNSUPPORTED_LSTMS[what]
    with pytest.raises(ValueError, match=what):
        interop.lstm_from_torch(torch.nn.LSTM(LSTM_D, H, **kwargs))


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------


def test_wrong_types_are_named(rng):
    model = make_model("Seq2seq", np.float32, rng)
    np.random.seed(SEED)
    not_models = ["model", model.encoder, reference.Seq2seq(V, D, H), interop.to_torch(model)]
    for not_a_model in not_models:
        with pytest.raises(TypeError, match="model must be a fastseq Seq2seq, PeekySeq2seq or "
                                            "AttentionSeq2seq"):
            interop.to_torch(not_a_model)
    for not_a_module in (model, torch.nn.Linear(2, 3), None):
        with pytest.raises(TypeError, match="module must be built by fastseq.interop.to_torch"):
            interop.from_torch(not_a_module)
    with pytest.raises(TypeError, match="time_lstm must be a fastseq.TimeLSTM"):
        interop.lstm_to_torch(torch.nn.LSTM(D, H, batch_first=True))
    with pytest.raises(TypeError, match="nn_lstm must be a torch.nn.LSTM"):
        interop.lstm_from_torch(model.encoder.lstm)


def test_unconvertible_weights_are_named(rng):
    module = interop.to_torch(make_model("PeekySeq2seq", np.float32, rng))
    with pytest.raises(TypeError, match=r"module must have float32 or float64 .*float16"):
        interop.from_torch(module.half())
    with pytest.raises(TypeError, match=r"nn_lstm must have float32 or float64 .*float16"):
        interop.lstm_from_torch(torch.nn.LSTM(D, H, batch_first=True).half())
    module.float()
    with torch.no_grad():
        module.decoder_affine.bias[0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        interop.from_torch(module)


# ------------------------------------------------------------------------------------------
# fastseq export / fastseq import
# ------------------------------------------------------------------------------------------


def run(capsys, *argv):
    """cli.main(argv) -> (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny 'fastseq train' run's folder (its settings.json and vocab.json)."""
    out = tmp_path_factory.mktemp("run") / "peeky"
    code = cli.main(["train", "--task", "addition", "--out", str(out), "--epochs", "1",
                     "--limit", "100", "--hidden", "8", "--wordvec", "4", "--batch-size", "30",
                     "--quiet"])
    assert code == 0
    return out


def run_folder(tiny_run, folder, name, rng):
    """``folder`` as if 'fastseq train --model <name>' had written it: the tiny run's settings
    and vocabulary with a model of random weights (varied answers)."""
    settings = json.loads((tiny_run / "settings.json").read_text())
    settings["model"] = name
    folder.mkdir()
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "vocab.json").write_bytes((tiny_run / "vocab.json").read_bytes())
    model = getattr(fastseq, name)(settings["vocab_size"], settings["wordvec_size"],
                                   settings["hidden_size"])
    for p in model.params:
        p[...] = rng.standard_normal(p.shape)
    params = folder / f"{name}.pkl"
    model.save_params(str(params))
    return params


@pytest.mark.parametrize("name", MODELS)
def test_export_import_round_trip(name, tiny_run, tmp_path, rng, capsys):
    params = run_folder(tiny_run, tmp_path / "run", name, rng)
    checkpoint = tmp_path / "model.pt"
    code, stdout, stderr = run(capsys, "export", "--params", params, "--to", "torch", checkpoint)
    assert code == 0 and stderr == "" and name in stdout

    # The checkpoint rebuilds the module in plain PyTorch (README, "Moving to PyTorch").
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["settings"] == json.loads((params.parent / "settings.json").read_text())
    assert saved["vocab"] == json.loads((params.parent / "vocab.json").read_text())
    s = saved["settings"]
    module = interop.TORCH_MODULES[s["model"]](s["vocab_size"], s["wordvec_size"],
                                              s["hidden_size"])
    module.load_state_dict(saved["state_dict"])
    model, _, _ = cli.load_trained(str(params))
    assert_same_params(interop.from_torch(module), model)
    xs, ts = rng.integers(0, s["vocab_size"], (N, s["question_width"])), \
        rng.integers(0, s["vocab_size"], (N, s["answer_width"]))
    assert_allclose(module(xs, ts).item(), model.forward(xs, ts), rtol=LOSS_RTOL)

    back = tmp_path / "back"
    code, stdout, stderr = run(capsys, "import", "--from", "torch", checkpoint, "--out", back)
    assert code == 0 and stderr == "" and f"{name}.pkl" in stdout
    for got, want in zip(load_arrays(back / f"{name}.pkl"), load_arrays(params), strict=True):
        assert_array_equal(got, want, strict=True)  # float16, as the book's files
    assert (back / "vocab.json").read_text() == (params.parent / "vocab.json").read_text()
    settings = json.loads((back / "settings.json").read_text())
    assert settings.pop("imported_from") == str(checkpoint)
    assert settings == saved["settings"]

    questions = ["16+75", "999+999", "0+0", "5+123"]
    answers = [run(capsys, "predict", "--params", folder / f"{name}.pkl", *questions)
               for folder in (params.parent, back)]
    assert answers[0][0] == 0 and answers[0] == answers[1]
    assert len(set(answers[0][1].splitlines())) > 1  # the random weights answer differently


def test_import_a_module_trained_in_torch(tiny_run, tmp_path, rng, capsys):
    """Train in PyTorch, save the state_dict in the exported checkpoint, import it back."""
    params = run_folder(tiny_run, tmp_path / "run", "AttentionSeq2seq", rng)
    checkpoint = tmp_path / "model.pt"
    assert cli.main(["export", "--params", str(params), "--to", "torch", str(checkpoint)]) == 0
    saved = torch.load(checkpoint, weights_only=True)
    s = saved["settings"]
    module = interop.TORCH_MODULES[s["model"]](s["vocab_size"], s["wordvec_size"],
                                              s["hidden_size"])
    module.load_state_dict(saved["state_dict"])
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
    xs = rng.integers(0, s["vocab_size"], (N, s["question_width"]))
    ts = rng.integers(0, s["vocab_size"], (N, s["answer_width"]))
    for _ in range(3):
        optimizer.zero_grad()
        module(xs, ts).backward()
        optimizer.step()
    torch.save(dict(saved, state_dict=module.state_dict()), checkpoint)

    code, _, stderr = run(capsys, "import", "--from", "torch", checkpoint, "--out",
                          tmp_path / "back")
    assert code == 0 and stderr == ""
    imported = load_arrays(tmp_path / "back" / "AttentionSeq2seq.pkl")
    trained = interop.from_torch(module).params
    for i, (got, want) in enumerate(zip(imported, trained, strict=True)):
        assert_array_equal(got, want.astype(np.float16), err_msg=f"params[{i}]")
    assert any(not np.array_equal(got, old) for got, old in zip(imported, load_arrays(params)))


@pytest.fixture(scope="module")
def bad_files(tiny_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "garbage.pt").write_text("hello world\n")
    (folder / "empty.pt").write_bytes(b"")
    torch.save({"weights": torch.zeros(3)}, folder / "other.pt")
    good = folder / "good.pt"
    assert cli.main(["export", "--params", str(tiny_run / "PeekySeq2seq.pkl"), "--to", "torch",
                     str(good)]) == 0
    data = good.read_bytes()
    (folder / "truncated.pt").write_bytes(data[:len(data) // 2])
    checkpoint = torch.load(good, weights_only=True)
    torch.save(dict(checkpoint, settings=dict(checkpoint["settings"], hidden_size=9)),
               folder / "wrong_size.pt")
    torch.save(dict(checkpoint, settings=dict(checkpoint["settings"], model="Transformer")),
               folder / "wrong_model.pt")
    torch.save(dict(checkpoint, vocab={"chars": ["a", "b"]}), folder / "wrong_vocab.pt")
    return folder


BAD_ARGS = {
    "import missing file": (["import", "--from", "torch", "{bad}/nothing.pt", "--out", "x"],
                            "nothing.pt"),
    "import garbage": (["import", "--from", "torch", "{bad}/garbage.pt", "--out", "x"],
                       "not a readable PyTorch checkpoint"),
    "import empty": (["import", "--from", "torch", "{bad}/empty.pt", "--out", "x"],
                     "not a readable PyTorch checkpoint"),
    "import truncated": (["import", "--from", "torch", "{bad}/truncated.pt", "--out", "x"],
                         "not a readable PyTorch checkpoint"),
    "import another torch file": (["import", "--from", "torch", "{bad}/other.pt", "--out", "x"],
                                  "not a checkpoint written by 'fastseq export'"),
    "import wrong sizes": (["import", "--from", "torch", "{bad}/wrong_size.pt", "--out", "x"],
                           "does not fit a PeekySeq2seq"),
    "import unknown model": (["import", "--from", "torch", "{bad}/wrong_model.pt", "--out", "x"],
                             "unknown model 'Transformer'"),
    "import wrong vocabulary": (["import", "--from", "torch", "{bad}/wrong_vocab.pt", "--out",
                                 "x"], "has 2 characters"),
    "import out is a file": (["import", "--from", "torch", "{bad}/good.pt", "--out",
                              "{bad}/garbage.pt"], "not a folder"),
    "import from jax": (["import", "--from", "jax", "{bad}/good.pt", "--out", "x"],
                        "invalid choice"),
    "import no out": (["import", "--from", "torch", "{bad}/good.pt"], "--out"),
    "export missing params": (["export", "--params", "{bad}/nothing.pkl", "--to", "torch",
                               "x.pt"], "nothing.pkl"),
    "export garbage params": (["export", "--params", "{bad}/garbage.pt", "--to", "torch",
                               "x.pt"], "settings.json"),
    "export to jax": (["export", "--params", "{run}/PeekySeq2seq.pkl", "--to", "jax", "x.pt"],
                      "invalid choice"),
    "export no folder": (["export", "--params", "{run}/PeekySeq2seq.pkl", "--to", "torch",
                          "{bad}/no/x.pt"], "cannot write"),
}


@pytest.mark.parametrize("argv, message", BAD_ARGS.values(), ids=BAD_ARGS.keys())
def test_bad_input_exits_2_with_one_line(argv, message, tiny_run, bad_files, tmp_path,
                                         monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = [a.format(bad=bad_files, run=tiny_run) for a in argv]
    code, stdout, stderr = run(capsys, *argv)
    assert code == 2
    assert stdout == ""
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("fastseq") and "error" in stderr and "Traceback" not in stderr
    assert message in stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.pt").exists()


# ------------------------------------------------------------------------------------------
# PyTorch stays optional
# ------------------------------------------------------------------------------------------


def test_import_fastseq_does_not_import_torch(run_python):
    result = run_python("import sys, fastseq, fastseq.cli, fastseq.reference\n"
                        "fastseq.cli.build_parser()\n"
                        "assert 'torch' not in sys.modules, 'fastseq imported torch'")
    assert result.returncode == 0, result.stderr


def test_without_torch_export_says_how_to_install_it(run_python, tiny_run, tmp_path):
    code = ("import sys\n"
            "sys.modules['torch'] = None  # as if PyTorch were not installed\n"
            "from fastseq import cli\n"
            "sys.exit(cli.main(sys.argv[1:]))")
    params = str(tiny_run / "PeekySeq2seq.pkl")
    for argv in (["export", "--params", params, "--to", "torch", str(tmp_path / "x.pt")],
                 ["import", "--from", "torch", str(tmp_path / "x.pt"), "--out", "x"]):
        result = run_python(code, *argv)
        assert result.returncode == 2, result.stderr
        assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
        assert "needs PyTorch" in result.stderr
        assert "pip install 'fastseq[torch]'" in result.stderr
    result = run_python("import sys\nsys.modules['torch'] = None\nimport fastseq.interop")
    assert "pip install 'fastseq[torch]'" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "x.pt").exists()
