"""Robustness of the models, their files and their threads (DESIGN.md, "Bad input"; issue 6).

Shapes: N batch, Ts question steps, Td decoder steps (ts has Td+1 columns), D word-vector
width, H hidden width, V vocabulary.

- ``load_params`` refuses every file that is not a params file for this model (missing,
  truncated, not a pickle, a pickle of something else or of hostile code, wrong count, shape,
  dtype or values) with a clear error, and leaves the model exactly as it was.
- ``save_params`` is atomic: a crash mid-write keeps the previous file and leaves no debris.
- Every public entry of the models rejects bad arguments with a TypeError / ValueError naming
  the argument, before any kernel runs.
- Kernels release the GIL, and two models trained in two Python threads at once end with
  exactly the params they get when trained one after the other.
"""
import os
import pickle
import re
import threading

import numba
import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastseq

MODELS = ["Seq2seq", "PeekySeq2seq", "AttentionSeq2seq"]
V, D, H = 11, 5, 6
N, Ts, Td = 3, 5, 4
START_ID = 3
F32, F64 = np.float32, np.float64


@pytest.fixture(autouse=True)
def keep_global_rng():
    state = np.random.get_state()
    yield
    np.random.set_state(state)


def make_model(name, dtype=F32, seed=0, sizes=(V, D, H)):
    np.random.seed(seed)
    return getattr(fastseq, name)(*sizes, dtype=dtype)


def ids(rng, *shape):
    return rng.integers(0, V, shape)


def answers(rng, n=N):
    ts = ids(rng, n, Td + 1)
    ts[:, 0] = START_ID
    return ts


def snapshot(model):
    return [id(p) for p in model.params], [p.copy() for p in model.params]


def assert_unchanged(model, snap):
    ids_before, values = snap
    assert [id(p) for p in model.params] == ids_before, "a param array was replaced"
    for i, (p, v) in enumerate(zip(model.params, values)):
        assert p.dtype == v.dtype and p.shape == v.shape
        assert_array_equal(p, v, err_msg=f"params[{i}] changed")


# =================================================================== load_params

@pytest.fixture
def saved(tmp_path, rng):
    """(model, path of a valid params file for it written by another model of its class)."""
    def make(name, dtype=F32):
        source = make_model(name, dtype, seed=1)
        path = tmp_path / f"{name}.pkl"
        source.save_params(path)
        return make_model(name, dtype, seed=2), path
    return make


def shapes_of(name):
    return [p.shape for p in make_model(name).params]


def write_pickle(path, obj, protocol=None):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def assert_rejected(model, path, error=ValueError, match=None):
    """load_params(path) raises ``error`` naming the file (and ``match``); the model is left as
    it was and still runs."""
    snap = snapshot(model)
    with pytest.raises(error, match=match or re.escape(str(path))) as info:
        model.load_params(path)
    assert str(path) in str(info.value), f"the message should name the file: {info.value}"
    assert_unchanged(model, snap)
    rng = np.random.default_rng(0)
    assert np.isfinite(model.forward(ids(rng, N, Ts), answers(rng)))
    return info.value


@pytest.mark.parametrize("name", MODELS)
def test_load_missing_file(name, tmp_path, monkeypatch):
    model = make_model(name)
    snap = snapshot(model)
    with pytest.raises(FileNotFoundError, match=r"missing\.pkl"):
        model.load_params(tmp_path / "missing.pkl")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=rf"{name}\.pkl"):  # the default file name
        model.load_params()
    with pytest.raises((FileNotFoundError, IsADirectoryError, ValueError), match=r"sub"):
        os.mkdir(tmp_path / "sub")
        model.load_params(tmp_path / "sub")  # a folder is not a file
    assert_unchanged(model, snap)


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.1, 0.0], ids=["half", "most", "tenth", "empty"])
@pytest.mark.parametrize("name", MODELS)
def test_load_truncated_file(name, fraction, saved):
    model, path = saved(name)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    assert_rejected(model, path, match=r"not a readable params file")


NOT_PICKLES = {
    "text": b"hello world\n",
    "random_bytes": np.random.default_rng(0).bytes(300),
    "png": b"\x89PNG\r\n\x1a\n" + bytes(40),
    "proto_header_only": b"\x80\x04",
    "bad_opcode": b"\x80\x04\xff",
    "stack_underflow": b".",
    "unclosed_marks": b"(" * 100_000,
}


@pytest.mark.parametrize("content", list(NOT_PICKLES) + ["gzip", "npy", "npz"])
@pytest.mark.parametrize("name", MODELS)
def test_load_file_that_is_not_a_pickle(name, content, saved, tmp_path):
    import gzip
    import io
    model, path = saved(name)
    if content == "gzip":  # a compressed params file
        data = gzip.compress(path.read_bytes())
    elif content in ("npy", "npz"):
        buf = io.BytesIO()
        (np.save if content == "npy" else np.savez)(buf, np.zeros(3))
        data = buf.getvalue()
    else:
        data = NOT_PICKLES[content]
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(data)
    assert_rejected(model, bad, match=r"not a readable params file")


OTHER_OBJECTS = {
    "dict": lambda shapes: {i: np.zeros(s, np.float16) for i, s in enumerate(shapes)},
    "list_of_strings": lambda shapes: ["W"] * len(shapes),
    "list_of_lists": lambda shapes: [np.zeros(s).tolist() for s in shapes],
    "list_of_none": lambda shapes: [None] * len(shapes),
    "none": lambda shapes: None,
    "string": lambda shapes: "params",
    "one_array": lambda shapes: np.zeros(shapes[0], np.float16),
    "set": lambda shapes: {1, 2},
}


@pytest.mark.parametrize("what", list(OTHER_OBJECTS))
@pytest.mark.parametrize("name", MODELS)
def test_load_pickle_of_something_else(name, what, saved, tmp_path):
    model, _ = saved(name)
    bad = tmp_path / "other.pkl"
    write_pickle(bad, OTHER_OBJECTS[what](shapes_of(name)))
    assert_rejected(model, bad)


NOT_REAL = {
    "object": lambda s: np.zeros(s, dtype=object),
    "str": lambda s: np.full(s, "a"),
    "bytes": lambda s: np.full(s, b"a"),
    "structured": lambda s: np.zeros(s, dtype=[("a", "f4")]),
    "complex": lambda s: np.full(s, 1 + 2j),
    "datetime": lambda s: np.zeros(s, dtype="M8[s]"),
}


@pytest.mark.parametrize("kind", list(NOT_REAL))
@pytest.mark.parametrize("name", MODELS)
def test_load_arrays_that_are_not_real_numbers(name, kind, saved, tmp_path):
    """Arrays of the right shapes whose values are not real numbers (object, text, records,
    complex, dates) must be refused with a clear error naming the file, not loaded (complex
    would lose its imaginary part, dates would become counts) nor crash inside NumPy."""
    model, _ = saved(name)
    bad = tmp_path / "notreal.pkl"
    write_pickle(bad, [NOT_REAL[kind](s) for s in shapes_of(name)])
    assert_rejected(model, bad, error=(ValueError, TypeError))


class _Shell:
    """Unpickling this runs a shell command: what a hostile params file would do."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _Eval:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return eval, (self.code,)


@pytest.mark.parametrize("payload", ["system_alone", "system_in_list", "eval_in_list",
                                     "system_after_arrays"])
@pytest.mark.parametrize("name", MODELS)
def test_load_malicious_pickle_runs_nothing(name, payload, saved, tmp_path):
    model, good = saved(name)
    marker = tmp_path / "pwned"
    command = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').close()"
    arrays = pickle.loads(good.read_bytes())
    obj = {"system_alone": lambda: _Shell(command),
           "system_in_list": lambda: [_Shell(command)] + arrays[1:],
           "eval_in_list": lambda: [_Eval(code)] + arrays[1:],
           "system_after_arrays": lambda: arrays[:-1] + [_Shell(command)]}[payload]()
    bad = tmp_path / "evil.pkl"
    write_pickle(bad, obj)
    # the payload is live: plain pickle.load would run it (checked with another marker)
    live = tmp_path / "live"
    write_pickle(tmp_path / "live.pkl",
                 _Shell(f"touch {live}") if "system" in payload
                 else _Eval(f"open({str(live)!r}, 'w').close()"))
    with open(tmp_path / "live.pkl", "rb") as f:
        pickle.load(f)
    assert live.exists()

    assert_rejected(model, bad, match=r"not a readable params file")
    assert not marker.exists(), "load_params ran the code in the file"


@pytest.mark.parametrize("delta", [-1, 1, -10])
@pytest.mark.parametrize("name", MODELS)
def test_load_wrong_parameter_count(name, delta, saved, tmp_path):
    model, good = saved(name)
    arrays = pickle.loads(good.read_bytes())
    arrays = arrays[:len(arrays) + delta] if delta < 0 else arrays + [arrays[-1]]
    bad = tmp_path / "count.pkl"
    write_pickle(bad, arrays)
    assert_rejected(model, bad, match=rf"holds {len(arrays)} arrays but {name} has 10 params")


@pytest.mark.parametrize("index", [0, 3, 5, 8, 9])
@pytest.mark.parametrize("name", MODELS)
def test_load_wrong_shape(name, index, saved, tmp_path):
    model, good = saved(name)
    arrays = pickle.loads(good.read_bytes())
    shape = arrays[index].shape
    for wrong in ((shape[0] + 1,) + shape[1:], shape[::-1] + (1,), ()):
        if wrong == shape:
            continue
        arrays[index] = np.zeros(wrong, np.float16)
        bad = tmp_path / "shape.pkl"
        write_pickle(bad, arrays)
        assert_rejected(model, bad, match=rf"array {index} has shape")


def test_load_from_a_model_of_other_sizes_or_class(tmp_path):
    other = make_model("Seq2seq", sizes=(V, D, H + 1))
    other.save_params(tmp_path / "other.pkl")
    assert_rejected(make_model("Seq2seq"), tmp_path / "other.pkl", match=r"has shape")
    peeky = make_model("PeekySeq2seq")
    peeky.save_params(tmp_path / "peeky.pkl")
    assert_rejected(make_model("Seq2seq"), tmp_path / "peeky.pkl", match=r"array 5 has shape")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("index", [0, 6, 9])
@pytest.mark.parametrize("name", MODELS)
def test_load_non_finite_values(name, index, value, saved, tmp_path):
    model, good = saved(name)
    arrays = pickle.loads(good.read_bytes())
    arrays[index].flat[-1] = value
    bad = tmp_path / "nonfinite.pkl"
    write_pickle(bad, arrays)
    assert_rejected(model, bad, match=r"NaN or inf")


@pytest.mark.parametrize("name", MODELS)
def test_load_values_that_overflow_the_models_dtype(name, tmp_path):
    """Finite in the file, inf in the model: 1e300 (float64) does not fit a float32 param. The
    NaN/inf check must hold for the values the model would end up with."""
    model = make_model(name, F32)
    arrays = [np.zeros(s, F64) for s in shapes_of(name)]
    arrays[2][0, 0] = 1e300
    bad = tmp_path / "overflow.pkl"
    write_pickle(bad, arrays)
    assert_rejected(model, bad)
    assert all(np.isfinite(p).all() for p in model.params)


def test_rejected_load_then_good_load(saved, tmp_path):
    model, good = saved("PeekySeq2seq")
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(good.read_bytes()[:100])
    assert_rejected(model, bad)
    ids_before = [id(p) for p in model.params]
    model.load_params(good)
    assert [id(p) for p in model.params] == ids_before
    for p, a in zip(model.params, pickle.loads(good.read_bytes())):
        assert_array_equal(p, a.astype(F32))


# =================================================================== save_params atomicity

class _Crash(Exception):
    pass


@pytest.mark.parametrize("crash", [_Crash, KeyboardInterrupt])
@pytest.mark.parametrize("name", MODELS)
def test_save_params_crash_mid_write_keeps_the_old_file(name, crash, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = make_model(name, seed=1)
    model.save_params()
    old = (tmp_path / f"{name}.pkl").read_bytes()
    os.chmod(tmp_path / f"{name}.pkl", 0o600)

    def dump_then_crash(obj, f, *args, **kwargs):
        f.write(pickle.dumps(obj)[:20])  # a few bytes reach the disk, then the process dies
        raise crash("simulated crash")

    model.params[0][...] += 1  # something new to save
    with monkeypatch.context() as patch:
        patch.setattr(pickle, "dump", dump_then_crash)
        with pytest.raises(crash):
            model.save_params()
    assert os.listdir(tmp_path) == [f"{name}.pkl"], "a temporary file was left behind"
    assert (tmp_path / f"{name}.pkl").read_bytes() == old
    model.save_params()  # and the next save works, keeping the file's permissions
    assert (tmp_path / f"{name}.pkl").read_bytes() != old
    assert os.stat(tmp_path / f"{name}.pkl").st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == [f"{name}.pkl"]


def test_save_params_crash_without_a_previous_file_leaves_nothing(tmp_path, monkeypatch):
    model = make_model("Seq2seq")

    def dump_then_crash(obj, f, *args, **kwargs):
        f.write(b"\x80\x04partial")
        raise _Crash("simulated crash")

    monkeypatch.setattr(pickle, "dump", dump_then_crash)
    with pytest.raises(_Crash):
        model.save_params(tmp_path / "new.pkl")
    assert os.listdir(tmp_path) == []


def test_save_params_into_a_missing_folder_raises_and_leaves_nothing(tmp_path):
    model = make_model("Seq2seq")
    with pytest.raises(FileNotFoundError):
        model.save_params(tmp_path / "no" / "such" / "folder.pkl")
    assert os.listdir(tmp_path) == []


# =================================================================== model bad input

def _call(model, entry, **bad):
    """Call one public entry of ``model`` with good arguments except those in ``bad``."""
    rng = np.random.default_rng(5)
    args = {"xs": ids(rng, N, Ts), "ts": answers(rng), "start_id": START_ID, "sample_size": 4}
    args.update(bad)
    if entry == "forward":
        return model.forward(args["xs"], args["ts"])
    return model.generate(args["xs"], args["start_id"], args["sample_size"])


def _with(value, shape=(N, Ts), at=(1, 2), dtype=np.int64):
    a = np.random.default_rng(6).integers(0, V, shape).astype(dtype)
    a[at] = value
    return a


BAD_XS = {
    "id_V": (lambda: _with(V), ValueError, rf"xs holds token id {V}, outside \[0, {V}\)"),
    "id_huge": (lambda: _with(2**40), ValueError, r"xs holds token id 1099511627776"),
    "id_minus_1": (lambda: _with(-1), ValueError, r"xs holds token id -1, outside"),
    "id_negative": (lambda: _with(-7, at=(0, 0)), ValueError, r"xs holds token id -7"),
    "int32_negative": (lambda: _with(-3, dtype=np.int32), ValueError, r"xs holds token id -3"),
    "uint64_huge": (lambda: _with(np.iinfo(np.uint64).max, dtype=np.uint64), ValueError,
                    r"xs holds token id"),
    "float64": (lambda: _with(1).astype(F64), TypeError, r"xs must hold integer token ids"),
    "float32": (lambda: _with(1).astype(F32), TypeError, r"xs must hold integer token ids"),
    "bool": (lambda: _with(1).astype(bool), TypeError, r"xs must hold integer token ids"),
    "strings": (lambda: np.full((N, Ts), "1"), TypeError, r"xs must hold integer token ids"),
    "1d": (lambda: _with(1)[0], ValueError, r"xs must have shape \(any, any\)"),
    "3d": (lambda: _with(1)[:, :, None], ValueError, r"xs must have shape \(any, any\)"),
    "0d": (lambda: np.int64(1), ValueError, r"xs must have shape"),
    "N0": (lambda: np.zeros((0, Ts), np.int64), ValueError, r"xs is empty"),
    "T0": (lambda: np.zeros((N, 0), np.int64), ValueError, r"xs is empty"),
}


@pytest.mark.parametrize("entry", ["forward", "generate"])
@pytest.mark.parametrize("case", list(BAD_XS))
@pytest.mark.parametrize("name", MODELS)
def test_bad_question_ids(name, case, entry):
    make, error, match = BAD_XS[case]
    model = make_model(name)
    snap = snapshot(model)
    with pytest.raises(error, match=match):
        _call(model, entry, xs=make())
    assert_unchanged(model, snap)


BAD_TS = {
    "id_V": (lambda: _with(V, (N, Td + 1), (2, 3)), ValueError, rf"ts holds token id {V}"),
    "id_minus_1_input": (lambda: _with(-1, (N, Td + 1), (0, 0)), ValueError,
                         r"ts\[:, :-1\] \(the decoder's input\) holds ignore_label \(-1\); "
                         r"only ts\[:, -1\], a target and never an input, may"),
    "id_minus_1_middle": (lambda: _with(-1, (N, Td + 1), (2, Td - 1)), ValueError,
                          r"ts\[:, :-1\] \(the decoder's input\) holds ignore_label"),
    "id_negative_target": (lambda: _with(-5, (N, Td + 1), (1, Td)), ValueError,
                           r"ts holds token id -5"),
    "float": (lambda: _with(1, (N, Td + 1)).astype(F64), TypeError,
              r"ts must hold integer token ids"),
    "one_column": (lambda: _with(1, (N, 1), (0, 0)), ValueError,
                   r"ts must have at least 2 columns"),
    "no_column": (lambda: np.zeros((N, 0), np.int64), ValueError, r"ts is empty|ts must have"),
    "batch_more": (lambda: _with(1, (N + 1, Td + 1)), ValueError,
                   rf"ts must have shape \({N}, any\)"),
    "batch_fewer": (lambda: _with(1, (1, Td + 1), (0, 0)), ValueError,
                    rf"ts must have shape \({N}, any\)"),
    "1d": (lambda: _with(1, (N, Td + 1))[0], ValueError, r"ts must have shape"),
    "3d": (lambda: _with(1, (N, Td + 1))[:, :, None], ValueError, r"ts must have shape"),
}


@pytest.mark.parametrize("case", list(BAD_TS))
@pytest.mark.parametrize("name", MODELS)
def test_bad_answer_ids(name, case):
    make, error, match = BAD_TS[case]
    model = make_model(name)
    snap = snapshot(model)
    with pytest.raises(error, match=match):
        _call(model, "forward", ts=make())
    assert_unchanged(model, snap)


@pytest.mark.parametrize("name", MODELS)
def test_ignore_label_in_the_last_answer_column(name):
    """ts[:, -1] is only a target, never a decoder input: as in the book it may be
    ignore_label (-1), which leaves those rows' last step out of the loss."""
    import fastseq.reference as reference
    rng = np.random.default_rng(7)
    xs, ts = ids(rng, N, Ts), answers(rng)
    ts[[0, 2], -1] = -1
    model = make_model(name, F64)
    np.random.seed(0)
    twin = getattr(reference, name)(V, D, H, dtype=F64)
    loss = model.forward(xs, ts)
    np.testing.assert_allclose(loss, twin.forward(xs, ts), rtol=1e-10)
    model.backward()
    twin.backward()
    for i, (g, g_twin) in enumerate(zip(model.grads, twin.grads)):
        np.testing.assert_allclose(g, g_twin, rtol=1e-9, atol=1e-12, err_msg=f"grads[{i}]")


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.uint8, np.uint16, np.uint32,
                                   np.uint64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", MODELS)
def test_ids_of_every_integer_dtype_give_the_int64_results(name, dtype):
    rng = np.random.default_rng(8)
    xs, ts = ids(rng, N, Ts), answers(rng)
    model = make_model(name, F64)
    assert model.forward(xs.astype(dtype), ts.astype(dtype)) == model.forward(xs, ts)
    assert_array_equal(model.generate(xs.astype(dtype), START_ID, 3),
                       model.generate(xs, START_ID, 3))


@pytest.mark.parametrize("which", ["embed", "lstm", "affine"])
@pytest.mark.parametrize("name", MODELS)
def test_generate_checks_the_params_before_using_them(name, which, capfd):
    """A decoder param rebound to another array is refused before any product is computed
    from it (PeekyDecoder.generate projects h through Wx[:H] first)."""
    model = make_model(name)
    layer = getattr(model.decoder, which)
    layer.params[0] = np.zeros((1, 1), F32)
    # the model's check names the model's list; the decoder's own check, the layer's
    with pytest.raises(ValueError, match=r"params\[\d+\] is no longer .* update params in place"):
        model.generate(ids(np.random.default_rng(0), N, Ts), START_ID, 3)
    h = np.zeros((N, H), F32)
    with pytest.raises(ValueError, match=r"params\[0\] is no longer .* update params in place"):
        model.decoder.generate(h[:, None].repeat(Ts, 1) if name == "AttentionSeq2seq" else h,
                               START_ID, 3)
    assert "SGEMM" not in capfd.readouterr().err  # OpenBLAS never saw the bad array


@pytest.mark.parametrize("how", ["model_param", "model_grad", "layer_param", "appended"])
@pytest.mark.parametrize("name", MODELS)
def test_model_lists_rebound_instead_of_updated_in_place(name, how, tmp_path):
    """model.params[i] = new (or a layer's params[i] = new, of the same shape and dtype) would
    leave the optimizer, save_params and load_params on an array the layers never read: every
    entry that uses the lists refuses, naming the entry."""
    model = make_model(name)
    if how == "model_param":
        model.params[6] = model.params[6].copy()
        match = rf"{name}\.params\[6\] is no longer the array its layer uses; update params in place"
    elif how == "model_grad":
        model.grads[2] = model.grads[2].copy()
        match = rf"{name}\.grads\[2\] is no longer the array its layer uses"
    elif how == "layer_param":
        model.encoder.lstm.params[0] = model.encoder.lstm.params[0].copy()
        match = rf"{name}\.params\[1\] is no longer the array its layer uses"
    else:
        model.params.append(model.params[0])
        match = rf"{name}\.params holds 11 arrays but its layers use 10"
    rng = np.random.default_rng(0)
    calls = [lambda: model.forward(ids(rng, N, Ts), answers(rng)),
             lambda: model.generate(ids(rng, N, Ts), START_ID, 2),
             lambda: model.save_params(tmp_path / "p.pkl"),
             lambda: model.load_params(tmp_path / "p.pkl")]
    for call in calls:
        with pytest.raises(ValueError, match=match):
            call()
    assert not os.listdir(tmp_path)


BAD_START = [V, V + 5, -1, -V, 1.0, 3.5, np.float64(3), True, "3", None, [3], np.array([3])]
BAD_SAMPLE = [-1, -100, 2.0, np.float32(4), True, "4", None, [4], np.array(4.0)]


@pytest.mark.parametrize("start_id", BAD_START, ids=repr)
@pytest.mark.parametrize("name", MODELS)
def test_bad_start_id(name, start_id):
    with pytest.raises((ValueError, TypeError), match=r"start_id"):
        _call(make_model(name), "generate", start_id=start_id)
    decoder = make_model(name).decoder
    h = np.zeros((N, Ts, H) if name == "AttentionSeq2seq" else (N, H), F32)
    with pytest.raises((ValueError, TypeError), match=r"start_id"):
        decoder.generate(h, start_id, 4)


@pytest.mark.parametrize("sample_size", BAD_SAMPLE, ids=repr)
@pytest.mark.parametrize("name", MODELS)
def test_bad_sample_size(name, sample_size):
    with pytest.raises((ValueError, TypeError), match=r"sample_size"):
        _call(make_model(name), "generate", sample_size=sample_size)


@pytest.mark.parametrize("name", MODELS)
def test_good_integer_types_are_accepted(name):
    """The checks must not be stricter than the book: NumPy integers work as ids and sizes."""
    model = make_model(name)
    rng = np.random.default_rng(0)
    for start, size in ((np.int64(START_ID), np.int32(3)), (np.uint8(START_ID), 0)):
        out = _call(model, "generate", start_id=start, sample_size=size)
        assert out.shape == (N, int(size))
    assert np.isfinite(model.forward(ids(rng, N, Ts).astype(np.int32),
                                     answers(rng).astype(np.uint8)))


def _decoder_state_arg(name):
    return "enc_hs" if name == "AttentionSeq2seq" else "h"


def _bad_states(name, dtype):
    """(label, value, error, words) for the state argument of decoder.generate (h, or enc_hs for
    attention), for a model of ``dtype``."""
    arg = _decoder_state_arg(name)
    good = (N, Ts, H) if name == "AttentionSeq2seq" else (N, H)
    other = F64 if dtype == F32 else F32
    cases = [
        ("other_float_dtype", np.zeros(good, other), TypeError, rf"{arg} has dtype"),
        ("float16", np.zeros(good, np.float16), TypeError, rf"{arg} must be a float32 or float64"),
        ("int", np.zeros(good, np.int64), TypeError, rf"{arg} must be a float32 or float64"),
        ("list", np.zeros(good).tolist(), TypeError, rf"{arg} must be a float32 or float64"),
        ("wider", np.zeros(good[:-1] + (H + 1,), dtype), ValueError, rf"{arg} must have shape"),
        ("narrower", np.zeros(good[:-1] + (H - 1,), dtype), ValueError, rf"{arg} must have shape"),
        ("fewer_dims", np.zeros(good[1:], dtype), ValueError, rf"{arg} must have shape"),
        ("more_dims", np.zeros(good + (1,), dtype), ValueError, rf"{arg} must have shape"),
        ("empty", np.zeros((0,) + good[1:], dtype), ValueError, rf"{arg} is empty"),
    ]
    return cases


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("name", MODELS)
def test_decoder_generate_rejects_bad_state(name, dtype):
    decoder = make_model(name, dtype).decoder
    for label, state, error, words in _bad_states(name, dtype):
        with pytest.raises(error, match=words):
            decoder.generate(state, START_ID, 4)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("name", MODELS)
def test_decoder_forward_rejects_bad_state(name, dtype):
    decoder = make_model(name, dtype).decoder
    xs = ids(np.random.default_rng(0), N, Td)
    for label, state, error, words in _bad_states(name, dtype):
        if label == "empty":
            continue  # an empty state with N rows of xs: a batch mismatch, checked below
        with pytest.raises(error, match=words):
            decoder.forward(xs, state)
    shape = (N + 1, Ts, H) if name == "AttentionSeq2seq" else (N + 1, H)
    with pytest.raises(ValueError, match=r"batch size|must have shape"):
        decoder.forward(xs, np.zeros(shape, dtype))


@pytest.mark.parametrize("name", MODELS)
def test_backward_before_forward(name):
    model = make_model(name)
    with pytest.raises(ValueError, match=r"backward\(\) was called before forward\(\)"):
        model.backward()
    encoder = model.encoder
    grad = np.zeros((N, Ts, H) if name == "AttentionSeq2seq" else (N, H), F32)
    with pytest.raises(ValueError, match=r"backward\(\) was called before forward\(\)"):
        encoder.backward(grad)
    with pytest.raises(ValueError, match=r"backward\(\) was called before forward\(\)"):
        model.decoder.backward(np.zeros((N, Td, V), F32))
    # generate runs the encoder but is no forward of the loss: backward still refuses
    model.generate(ids(np.random.default_rng(0), N, Ts), START_ID, 2)
    with pytest.raises(ValueError, match=r"backward\(\) was called before forward\(\)"):
        model.backward()


def test_encoder_backward_rejects_bad_dh():
    encoder = fastseq.Encoder(V, D, H)
    encoder.forward(ids(np.random.default_rng(0), N, Ts))
    with pytest.raises(ValueError, match=r"dh must have shape"):
        encoder.backward(np.zeros((N, H + 1), F32))
    with pytest.raises(TypeError, match=r"dh has dtype float64"):
        encoder.backward(np.zeros((N, H), F64))


@pytest.mark.parametrize("name", MODELS)
def test_rejected_forward_keeps_the_previous_forward_for_backward(name):
    rng = np.random.default_rng(1)
    model, twin = make_model(name, F64), make_model(name, F64)
    xs, ts = ids(rng, N, Ts), answers(rng)
    model.forward(xs, ts)
    twin.forward(xs, ts)
    with pytest.raises(ValueError, match=r"xs holds token id"):
        model.forward(_with(V), ts)
    model.backward()
    twin.backward()
    for g, g_twin in zip(model.grads, twin.grads):
        assert_array_equal(g, g_twin)


BAD_SIZES = [0, -1, -5, 2.0, 2.5, True, False, "4", None, np.float64(3)]
SIZE_ARGS = ["vocab_size", "wordvec_size", "hidden_size"]
CONSTRUCTORS = MODELS + ["Encoder", "Decoder", "PeekyDecoder", "AttentionEncoder",
                         "AttentionDecoder"]


@pytest.mark.parametrize("value", BAD_SIZES, ids=repr)
@pytest.mark.parametrize("arg", SIZE_ARGS)
@pytest.mark.parametrize("cls", CONSTRUCTORS)
def test_constructor_rejects_bad_sizes(cls, arg, value):
    sizes = dict(vocab_size=V, wordvec_size=D, hidden_size=H)
    sizes[arg] = value
    with pytest.raises((ValueError, TypeError), match=arg):
        getattr(fastseq, cls)(**sizes)
    positional = [sizes[a] for a in SIZE_ARGS]
    with pytest.raises((ValueError, TypeError), match=arg):
        getattr(fastseq, cls)(*positional)


@pytest.mark.parametrize("dtype", [np.float16, int, np.int32, np.int64, bool, np.complex128,
                                   "float16", "int8", object], ids=repr)
@pytest.mark.parametrize("cls", CONSTRUCTORS)
def test_constructor_rejects_bad_dtype(cls, dtype):
    with pytest.raises(TypeError, match=r"dtype must be float32 or float64"):
        getattr(fastseq, cls)(V, D, H, dtype=dtype)


@pytest.mark.parametrize("cls", CONSTRUCTORS)
def test_constructor_accepts_numpy_integers_and_dtype_spellings(cls):
    for dtype in (np.float32, "float32", "f", np.dtype("f4"), np.float64, "float64", "d"):
        obj = getattr(fastseq, cls)(np.int64(V), np.int32(D), np.uint8(H), dtype=dtype)
        assert all(p.dtype == np.dtype(dtype) for p in obj.params)


# =================================================================== threads

def test_every_kernel_releases_the_gil():
    """Every compiled kernel is built with nogil=True (so Python threads run them at once)."""
    import importlib
    import pkgutil
    import fastseq.kernels as kernels
    dispatchers = {}
    for info in pkgutil.iter_modules(kernels.__path__):
        module = importlib.import_module(f"fastseq.kernels.{info.name}")
        for attr, obj in vars(module).items():
            obj = getattr(obj, "dispatcher", obj)  # kernels serialised by fastseq.kernels.jit
            if isinstance(obj, numba.core.registry.CPUDispatcher) and \
                    obj.py_func.__module__ == module.__name__:
                dispatchers[f"{info.name}.{attr}"] = obj
    assert len(dispatchers) >= 10, sorted(dispatchers)
    for label, obj in dispatchers.items():
        assert obj.targetoptions.get("nogil") is True, f"{label} holds the GIL"


def _train(model, batches, steps):
    optimizer = fastseq.Adam(lr=0.01)
    losses = []
    for k in range(steps):
        xs, ts = batches[k % len(batches)]
        losses.append(model.forward(xs, ts))
        model.backward()
        fastseq.clip_grads(model.grads, 5.0)
        optimizer.update(model.params, model.grads)
    answers_ = model.generate(batches[0][0], START_ID, Td)
    return losses, answers_


def _setup(name, seed, dtype):
    """A model a little bigger than the others (so the two threads' kernels overlap) and its
    batches, all seeded."""
    np.random.seed(seed)
    model = getattr(fastseq, name)(13, 16, 32, dtype=dtype)
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(3):
        xs = rng.integers(0, 13, (48, 9))[:, ::-1]
        ts = rng.integers(0, 13, (48, 6))
        ts[:, 0] = 0
        batches.append((xs, ts))
    return model, batches


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("names", [("PeekySeq2seq", "AttentionSeq2seq"), ("Seq2seq", "Seq2seq")],
                         ids=["peeky+attention", "seq2seq+seq2seq"])
def test_two_models_trained_in_two_threads_match_sequential(names, dtype, threads):
    steps = 10
    seeds = (11, 12)
    sequential = []
    for name, seed in zip(names, seeds):
        model, batches = _setup(name, seed, dtype)
        sequential.append((model, _train(model, batches, steps)))

    jobs = [_setup(name, seed, dtype) for name, seed in zip(names, seeds)]
    results, errors = [None, None], []
    barrier = threading.Barrier(2)

    def work(k):
        try:
            model, batches = jobs[k]
            barrier.wait()
            results[k] = _train(model, batches, steps)
        except BaseException as e:  # reported below: an exception in a thread is easy to miss
            errors.append(e)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    assert not any(w.is_alive() for w in workers), "a training thread hung"
    assert not errors, errors
    for k, ((model_seq, (losses_seq, gen_seq)), (model, _)) in enumerate(zip(sequential, jobs)):
        losses, gen = results[k]
        assert losses == losses_seq, f"model {k}: losses differ"
        assert_array_equal(gen, gen_seq, err_msg=f"model {k}: generated ids differ")
        for i, (p, q) in enumerate(zip(model.params, model_seq.params)):
            assert_array_equal(p, q, err_msg=f"model {k} params[{i}]")


def test_generate_in_many_threads_at_once():
    """Eight threads decode with eight models at once; each gets what it gets alone."""
    models = [make_model(name, F32, seed=k) for k, name in enumerate(MODELS * 3)][:8]
    rng = np.random.default_rng(3)
    questions = [ids(rng, 17, Ts) for _ in models]
    want = [m.generate(q, START_ID, 8) for m, q in zip(models, questions)]
    got, errors = [None] * len(models), []
    barrier = threading.Barrier(len(models))

    def work(k):
        try:
            barrier.wait()
            for _ in range(5):
                got[k] = models[k].generate(questions[k], START_ID, 8)
        except BaseException as e:
            errors.append(e)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(len(models))]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    assert not errors, errors
    for k in range(len(models)):
        assert_array_equal(got[k], want[k], err_msg=f"model {k}")
