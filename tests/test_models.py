"""The book's three seq2seq models (DESIGN.md, "Models and their initial weights").

Shapes: N batch, Ts question (encoder) steps, Td decoder steps (ts has Td+1 columns: the start
symbol and Td targets), D word-vector width, H hidden width, V vocabulary, S sample_size.

Each fast model is checked against its plain NumPy twin in ``fastseq.reference`` built after the
same ``np.random.seed`` (loss, every gradient, generation, one optimizer step), by central finite
differences of the whole loss (the model wiring: the folded embedding, the peeky decoder's
const paths, attention's d enc_hs), and against the contract: initial weights drawn in the
documented order, params/grads identity, generate's result types, the save/load file format.
"""
import os
import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastseq
import fastseq.reference as reference
from fastseq.kernels.decode import _prefix_depth
from conftest import (DTYPES, FD_ATOL, FD_RTOL, RTOL64, THREAD_COUNTS, assert_close,
                      assert_threads_agree, finite_difference, tolerances)

MODELS = ["Seq2seq", "PeekySeq2seq", "AttentionSeq2seq"]
V, D, H = 11, 5, 6
Ts, Td, S = 5, 4, 6
START_ID = 3
SEED = 1984
# generated ids are compared exactly; the attention weights are compared as floats
WEIGHT_SUM_RTOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-13}


@pytest.fixture(autouse=True)
def keep_global_rng():
    """The models draw their weights from the global RNG, as the book's; give it back."""
    state = np.random.get_state()
    yield
    np.random.set_state(state)


def make_pair(name, dtype, seed=SEED, sizes=(V, D, H)):
    """(fast model, reference model), both built right after ``np.random.seed(seed)``."""
    np.random.seed(seed)
    fast_model = getattr(fastseq, name)(*sizes, dtype=dtype)
    np.random.seed(seed)
    ref_model = getattr(reference, name)(*sizes, dtype=dtype)
    return fast_model, ref_model


def randomize(models, rng, scale=0.5):
    """Write the same random values (biases too) into the params of every model, in place: the
    book's initial embedding (randn/100) barely moves the scores, and its biases are zero."""
    for arrays in zip(*(m.params for m in models)):
        value = scale * rng.standard_normal(arrays[0].shape)
        for p in arrays:
            p[...] = value


def questions(rng, N, T=Ts, layout="contiguous"):
    """Question ids (N,T); 'reversed' is the book's ``xs[:, ::-1]`` view."""
    xs = rng.integers(0, V, (N, T))
    return xs[:, ::-1] if layout == "reversed" else xs


def answers(rng, N, T=Td):
    ts = rng.integers(0, V, (N, T + 1))
    ts[:, 0] = START_ID
    return ts


def layer_objects(model):
    """The model's weighted layers in the documented params order."""
    enc, dec = model.encoder, model.decoder
    return [enc.embed, enc.lstm, dec.embed, dec.lstm, dec.affine]


# ------------------------------------------------------------------- fast vs reference twin

TWIN_CASES = {
    # name: (N, question layout, sizes (V, D, H))
    "N1": (1, "contiguous", (V, D, H)),
    "N3": (3, "contiguous", (V, D, H)),
    "N1_reversed": (1, "reversed", (V, D, H)),
    "N5_reversed": (5, "reversed", (V, D, H)),
    # wide enough for the register tiles of kernels/tiles.py (whole panels of 64 float32 or
    # 32 float64 columns, blocks of 6 rows and fewer) in every per-step product, the attention
    # products included, with batch rows split across threads
    "N40_H64_reversed": (40, "reversed", (V, 16, 64)),
}


def _twin_run(model, xs, ts):
    loss = model.forward(xs, ts)
    result = {"loss": loss}
    if isinstance(model.decoder, (fastseq.AttentionDecoder, reference.AttentionDecoder)):
        result["forward_weights"] = np.stack(model.decoder.attention_weights, axis=1)
    model.backward()
    for i, g in enumerate(model.grads):
        result[f"grads[{i}]"] = g.copy()
    result["generated"] = model.generate(xs, START_ID, S)
    if isinstance(model.decoder, (fastseq.AttentionDecoder, reference.AttentionDecoder)):
        result["generate_weights"] = np.stack(model.decoder.attention_weights, axis=1)
    return result


@pytest.mark.parametrize("weights", ["book_init", "random"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(TWIN_CASES))
@pytest.mark.parametrize("name", MODELS)
def test_model_matches_reference(name, case, dtype, weights, rng, thread_count):
    """Loss, every grad and the greedy ids of the fast model vs its twin, with 1 and 2 threads.
    Generation must be identical (seeded data, no near-ties); at float64 anything else is a
    bug, at float32 a difference would mean an exact near-tie, to be reported."""
    N, layout, sizes = TWIN_CASES[case]
    fast_model, ref_model = make_pair(name, dtype, sizes=sizes)
    if weights == "random":
        randomize([fast_model, ref_model], rng)
    xs, ts = questions(rng, N, layout=layout), answers(rng, N)

    want = _twin_run(ref_model, xs, ts)
    got = {}
    for n in THREAD_COUNTS:
        thread_count(n)
        got[n] = _twin_run(fast_model, xs, ts)
    rtol, atol = tolerances(dtype)
    for n in THREAD_COUNTS:
        assert got[n].keys() == want.keys()
        assert np.ndim(got[n]["loss"]) == 0
        assert_allclose(float(got[n]["loss"]), float(want["loss"]), rtol=rtol, atol=atol,
                        err_msg=f"loss with {n} threads")
        for key, value in want.items():
            if key in ("loss", "generated"):
                continue
            assert_close(got[n][key], value, dtype, err_msg=f"{key} with {n} threads")
            assert_threads_agree(got[1][key], got[n][key], dtype, err_msg=f"{key}: 1 vs {n}")
        if N == 1:
            assert got[n]["generated"] == want["generated"], f"generated, {n} threads"
        else:
            assert_array_equal(got[n]["generated"], want["generated"],
                               err_msg=f"generated, {n} threads")


# ------------------------------------------------------------------- finite differences

FD_V, FD_D, FD_H, FD_Ts, FD_Td, FD_N = 7, 3, 4, 3, 3, 3


@pytest.mark.parametrize("dout", [1, 0.37])
@pytest.mark.parametrize("name", MODELS)
def test_model_gradient_by_finite_differences(name, dout, rng, threads):
    """d(dout * loss)/d(every param) by central differences at float64, tiny sizes, random
    weights and biases; the questions repeat ids (the embedding's scatter-add) and are a
    reversed view."""
    np.random.seed(7)
    model = getattr(fastseq, name)(FD_V, FD_D, FD_H, dtype=np.float64)
    randomize([model], rng)
    xs = rng.integers(0, FD_V, (FD_N, FD_Ts))
    xs[0, :2] = xs[1, 2] = 4  # repeated ids
    xs = xs[:, ::-1]
    ts = rng.integers(0, FD_V, (FD_N, FD_Td + 1))
    ts[1, 1] = ts[2, 2] = 4  # an id shared by encoder and decoder inputs

    def loss():
        return dout * model.forward(xs, ts)

    loss()
    model.backward(dout)
    grads = [g.copy() for g in model.grads]
    assert len(grads) == 10
    for i, (p, g) in enumerate(zip(model.params, grads)):
        assert g.dtype == np.float64
        numeric = finite_difference(loss, p)
        assert_allclose(g, numeric, rtol=FD_RTOL, atol=FD_ATOL, err_msg=f"{name} grads[{i}]")


@pytest.mark.parametrize("name", ["Decoder", "PeekyDecoder", "AttentionDecoder"])
def test_decoder_input_gradient_by_finite_differences(name, rng, threads):
    """The decoder's backward returns d h (d enc_hs for attention): the peeky decoder's sum of
    the LSTM's dh and both const paths, attention's d enc_hs plus the LSTM's dh at the last
    step."""
    np.random.seed(8)
    decoder = getattr(fastseq, name)(FD_V, FD_D, FD_H, dtype=np.float64)
    randomize([decoder], rng)
    xs = rng.integers(0, FD_V, (FD_N, FD_Td))
    shape = (FD_N, FD_Ts, FD_H) if name == "AttentionDecoder" else (FD_N, FD_H)
    h = rng.standard_normal(shape)
    dscore = rng.standard_normal((FD_N, FD_Td, FD_V))

    def loss():
        return np.sum(decoder.forward(xs, h) * dscore)

    loss()
    dh = decoder.backward(dscore)
    assert dh.shape == shape and dh.dtype == np.float64
    assert_allclose(dh, finite_difference(loss, h), rtol=FD_RTOL, atol=FD_ATOL, err_msg=name)


# ------------------------------------------------------------------- generate

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", MODELS)
def test_batched_generate_equals_one_question_at_a_time(name, dtype, threads):
    N = 7
    rng = np.random.default_rng(3)  # weights and questions that give every model varied answers
    model, _ = make_pair(name, dtype)
    randomize([model], rng, scale=1.0)
    xs = questions(rng, N, layout="reversed")
    batched = model.generate(xs, START_ID, S)
    assert isinstance(batched, np.ndarray) and batched.shape == (N, S)
    assert np.issubdtype(batched.dtype, np.integer)
    assert batched.min() >= 0 and batched.max() < V
    assert len({tuple(row) for row in batched}) > 1, "the test data should give varied answers"
    for i in range(N):
        alone = model.generate(xs[i:i + 1], START_ID, S)
        assert alone == batched[i].tolist(), f"row {i} decoded alone"


@pytest.mark.parametrize("Tq", [Ts, 2, 1])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", MODELS)
def test_many_questions_over_a_small_vocabulary(name, dtype, Tq, threads):
    """With at least 4 * V**p questions, the kernel runs the encoder's first p steps once per
    prefix of p tokens and each question looks its prefix up (here p = min(2, Tq): the whole
    encoder when Tq <= 2). Ids and attention weights equal the reference twin's, which encodes
    every question in full, and decoding each question alone gives the same ids."""
    small_V = 5
    N = 4 * small_V ** 2 + 3
    assert _prefix_depth(N, small_V, Tq) == min(2, Tq)
    rng = np.random.default_rng(5)
    fast_model, ref_model = make_pair(name, dtype, sizes=(small_V, D, H))
    randomize([fast_model, ref_model], rng, scale=2.0)
    xs = rng.integers(0, small_V, (N, Tq))[:, ::-1]
    got = fast_model.generate(xs, START_ID, S)
    assert_array_equal(got, ref_model.generate(xs, START_ID, S))
    assert len({tuple(row) for row in got}) >= 3, "the test data should give varied answers"
    if name == "AttentionSeq2seq":
        for s, (w, w_ref) in enumerate(zip(fast_model.decoder.attention_weights,
                                           ref_model.decoder.attention_weights)):
            assert_close(w, w_ref, dtype, err_msg=f"attention weights, step {s}")
    for i in range(N):
        assert fast_model.generate(xs[i:i + 1], START_ID, S) == got[i].tolist(), f"row {i}"


@pytest.mark.parametrize("name", MODELS)
def test_generate_result_types(name, rng):
    model, _ = make_pair(name, np.float32)
    randomize([model], rng)
    one = model.generate(questions(rng, 1), START_ID, S)
    assert type(one) is list and len(one) == S
    assert all(type(i) is int and 0 <= i < V for i in one)
    many = model.generate(questions(rng, 4), np.int64(START_ID), S)
    assert type(many) is np.ndarray and many.shape == (4, S)
    assert np.issubdtype(many.dtype, np.integer)
    assert len(model.generate(questions(rng, 1), START_ID, 1)) == 1


@pytest.mark.parametrize("name", MODELS)
def test_generate_sample_size_zero(name, rng):
    model, _ = make_pair(name, np.float64)
    assert model.generate(questions(rng, 1), START_ID, 0) == []
    empty = model.generate(questions(rng, 3), START_ID, 0)
    assert isinstance(empty, np.ndarray) and empty.shape == (3, 0)
    if name == "AttentionSeq2seq":
        assert list(model.decoder.attention_weights) == []


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N", [1, 3])
def test_attention_weights_after_generate_and_forward(N, dtype, rng):
    fast_model, ref_model = make_pair("AttentionSeq2seq", dtype)
    randomize([fast_model, ref_model], rng)
    xs, ts = questions(rng, N), answers(rng, N)
    rtol = WEIGHT_SUM_RTOL[np.dtype(dtype)]

    fast_model.generate(xs, START_ID, S)
    ref_model.generate(xs, START_ID, S)
    weights = fast_model.decoder.attention_weights
    assert isinstance(weights, list) and len(weights) == S
    for s, (w, w_ref) in enumerate(zip(weights, ref_model.decoder.attention_weights)):
        assert w.shape == (N, Ts) and w.dtype == dtype
        assert (w >= 0).all()
        assert_allclose(w.sum(axis=1), 1, rtol=rtol, err_msg=f"generate step {s}")
        assert_close(w, w_ref, dtype, err_msg=f"generate step {s}")

    fast_model.forward(xs, ts)
    ref_model.forward(xs, ts)
    weights = fast_model.decoder.attention_weights
    assert isinstance(weights, list) and len(weights) == Td
    for t, (w, w_ref) in enumerate(zip(weights, ref_model.decoder.attention_weights)):
        assert w.shape == (N, Ts) and w.dtype == dtype
        assert_allclose(w.sum(axis=1), 1, rtol=rtol, err_msg=f"forward step {t}")
        assert_close(w, w_ref, dtype, err_msg=f"forward step {t}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", MODELS)
def test_decoder_generate_takes_any_layout_of_its_state(name, dtype, rng):
    """decoder.generate(h) (enc_hs for attention) with h a reversed view, a strided view or
    Fortran-ordered gives what the contiguous h gives, and what the reference gives."""
    fast_model, ref_model = make_pair(name, dtype)
    randomize([fast_model, ref_model], rng)
    shape = (4, Ts, H) if name == "AttentionSeq2seq" else (4, H)
    h = rng.standard_normal(shape).astype(dtype)
    want = ref_model.decoder.generate(h, START_ID, S)
    views = {"contiguous": h, "reversed": np.ascontiguousarray(h[:, ::-1])[:, ::-1],
             "fortran": np.asfortranarray(h)}
    wide = np.full((shape[0], 2 * shape[1]) + shape[2:], np.nan, dtype)
    wide[:, ::2] = h
    views["strided"] = wide[:, ::2]
    for layout, view in views.items():
        assert_array_equal(view, h)
        assert_array_equal(fast_model.decoder.generate(view, START_ID, S), want, err_msg=layout)


@pytest.mark.parametrize("name", MODELS)
def test_generate_leaves_params_and_grads_alone(name, rng):
    model, _ = make_pair(name, np.float64)
    randomize([model], rng)
    model.forward(questions(rng, 3), answers(rng, 3))
    model.backward()
    before = [a.copy() for a in model.params + model.grads]
    model.generate(questions(rng, 2), START_ID, S)
    for a, b in zip(model.params + model.grads, before):
        assert_array_equal(a, b)


# ------------------------------------------------------------------- initial weights, params

def book_weights(name, dtype, seed, V=V, D=D, H=H):
    """The DESIGN.md formulas drawn here, in the documented order, right after seed(seed)."""
    rn, sq = np.random.randn, np.sqrt
    np.random.seed(seed)
    enc = [(rn(V, D) / 100).astype(dtype), (rn(D, 4 * H) / sq(D)).astype(dtype),
           (rn(H, 4 * H) / sq(H)).astype(dtype), np.zeros(4 * H, dtype)]
    if name == "PeekySeq2seq":
        dec = [(rn(V, D) / 100).astype(dtype), (rn(H + D, 4 * H) / sq(H + D)).astype(dtype),
               (rn(H, 4 * H) / sq(H)).astype(dtype), np.zeros(4 * H, dtype),
               (rn(2 * H, V) / sq(2 * H)).astype(dtype), np.zeros(V, dtype)]
    elif name == "AttentionSeq2seq":
        dec = [(rn(V, D) / 100).astype(dtype), (rn(D, 4 * H) / sq(D)).astype(dtype),
               (rn(H, 4 * H) / sq(H)).astype(dtype), np.zeros(4 * H, dtype),
               (rn(2 * H, V) / sq(2 * H)).astype(dtype), np.zeros(V, dtype)]
    else:
        dec = [(rn(V, D) / 100).astype(dtype), (rn(D, 4 * H) / sq(D)).astype(dtype),
               (rn(H, 4 * H) / sq(H)).astype(dtype), np.zeros(4 * H, dtype),
               (rn(H, V) / sq(H)).astype(dtype), np.zeros(V, dtype)]
    return enc + dec, np.random.get_state()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("seed", [0, SEED])
def test_initial_weights_follow_the_formulas_bit_for_bit(name, dtype, seed):
    want, state_after = book_weights(name, dtype, seed, V=13, D=4, H=7)
    np.random.seed(seed)
    model = getattr(fastseq, name)(13, 4, 7, dtype=dtype)
    assert len(model.params) == len(want) == 10
    for i, (p, w) in enumerate(zip(model.params, want)):
        assert p.dtype == np.dtype(dtype) and p.shape == w.shape, f"params[{i}]"
        assert_array_equal(p, w, err_msg=f"params[{i}]")
    # the model drew exactly these numbers, nothing more
    state = np.random.get_state()
    assert state[2] == state_after[2] and state[3:] == state_after[3:]
    assert_array_equal(state[1], state_after[1])


def test_float32_is_the_default_dtype():
    for name in MODELS:
        model = getattr(fastseq, name)(V, D, H)
        assert all(p.dtype == np.float32 for p in model.params + model.grads), name


PARAM_SHAPES = {
    "Seq2seq": [(V, D), (D, 4 * H), (H, 4 * H), (4 * H,),
                (V, D), (D, 4 * H), (H, 4 * H), (4 * H,), (H, V), (V,)],
    "PeekySeq2seq": [(V, D), (D, 4 * H), (H, 4 * H), (4 * H,),
                     (V, D), (H + D, 4 * H), (H, 4 * H), (4 * H,), (2 * H, V), (V,)],
    "AttentionSeq2seq": [(V, D), (D, 4 * H), (H, 4 * H), (4 * H,),
                         (V, D), (D, 4 * H), (H, 4 * H), (4 * H,), (2 * H, V), (V,)],
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", MODELS)
def test_params_and_grads_are_the_layers_arrays(name, dtype, rng):
    """Seq2seq: encoder [embed W, Wx, Wh, b] + decoder [embed W, Wx, Wh, b, affine W, affine b];
    the very arrays of the layers, and the same objects after a training step."""
    model, _ = make_pair(name, dtype)
    layers = layer_objects(model)
    want_params = [p for layer in layers for p in layer.params]
    want_grads = [g for layer in layers for g in layer.grads]
    for attr in ("params", "grads"):
        lst = getattr(model, attr)
        assert type(lst) is list and len(lst) == 10
        assert [a.shape for a in lst] == PARAM_SHAPES[name], attr
    assert all(p is q for p, q in zip(model.params, want_params))
    assert all(g is q for g, q in zip(model.grads, want_grads))
    assert model.params[:4] == model.encoder.params and model.params[4:] == model.decoder.params
    assert all(a is b for a, b in zip(model.params, model.encoder.params + model.decoder.params))
    assert all(a is b for a, b in zip(model.grads, model.encoder.grads + model.decoder.grads))
    assert len({id(a) for a in model.params + model.grads}) == 20  # no two share an object
    for p, g in zip(model.params, model.grads):
        assert g.shape == p.shape and g.dtype == p.dtype and not g.any()

    ids = [id(a) for a in model.params + model.grads]
    optimizer = fastseq.Adam()
    for _ in range(2):
        model.forward(questions(rng, 3), answers(rng, 3))
        model.backward()
        fastseq.clip_grads(model.grads, 1.0)
        optimizer.update(model.params, model.grads)
        model.generate(questions(rng, 2), START_ID, 2)
    assert [id(a) for a in model.params + model.grads] == ids
    assert all(p is q for p, q in zip(model.params, [p for la in layers for p in la.params]))


# ------------------------------------------------------------------- save / load

def book_save(params, path, protocol=None):
    """The book's BaseModel.save_params, written with plain NumPy and pickle."""
    arrays = [p.astype(np.float16) for p in params]
    with open(path, "wb") as f:
        pickle.dump(arrays, f, protocol=protocol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", MODELS)
def test_save_load_round_trip_default_file_name(name, dtype, rng, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, _ = make_pair(name, dtype, seed=1)
    randomize([model], rng)
    model.save_params()
    assert os.listdir(tmp_path) == [f"{name}.pkl"]  # no temporary file left behind
    with open(tmp_path / f"{name}.pkl", "rb") as f:
        saved = pickle.load(f)
    assert type(saved) is list and len(saved) == 10
    for p, a in zip(model.params, saved):
        assert type(a) is np.ndarray and a.dtype == np.float16
        assert_array_equal(a, p.astype(np.float16))

    other, _ = make_pair(name, dtype, seed=2)
    ids = [id(p) for p in other.params]
    other.load_params()
    assert [id(p) for p in other.params] == ids
    assert all(p is q for p, q in zip(other.params, [p for la in layer_objects(other)
                                                     for p in la.params]))
    for p, a in zip(other.params, saved):
        assert p.dtype == np.dtype(dtype)
        assert_array_equal(p, a.astype(dtype))
    # the loaded model computes what a model holding those values computes
    xs = questions(rng, 3)
    assert other.generate(xs, START_ID, S).tolist() == \
        _with_params(name, dtype, saved).generate(xs, START_ID, S).tolist()


def _with_params(name, dtype, arrays):
    np.random.seed(3)
    model = getattr(fastseq, name)(V, D, H, dtype=dtype)
    for p, a in zip(model.params, arrays):
        p[...] = a
    return model


@pytest.mark.parametrize("name", MODELS)
def test_save_and_load_with_a_file_name(name, rng, tmp_path):
    model, _ = make_pair(name, np.float32, seed=1)
    randomize([model], rng)
    path = tmp_path / "weights.pkl"
    model.save_params(str(path))
    other, _ = make_pair(name, np.float32, seed=2)
    other.load_params(str(path))
    for p, q in zip(other.params, model.params):
        assert_array_equal(p, q.astype(np.float16).astype(np.float32))
    model.save_params(path)  # a pathlib.Path works too, and overwrites
    other.load_params(path)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("name", MODELS)
def test_a_file_written_by_the_book_loads(name, protocol, rng, tmp_path, monkeypatch):
    """The book writes ``pickle.dump([p.astype(np.float16) for p in params], f)``; the pickle
    protocol is Python's default (4; 5 from Python 3.14), so every protocol must load."""
    monkeypatch.chdir(tmp_path)
    _, ref_model = make_pair(name, np.float32, seed=1)
    randomize([ref_model], rng)
    book_save(ref_model.params, f"{name}.pkl", protocol)
    model, _ = make_pair(name, np.float32, seed=2)
    model.load_params()
    for i, (p, q) in enumerate(zip(model.params, ref_model.params)):
        assert_array_equal(p, q.astype(np.float16).astype(np.float32), err_msg=f"params[{i}]")


def as_numpy1_pickle(data):
    """A protocol-4 pickle as NumPy 1.x writes it: the array rebuilder lives in
    ``numpy.core.multiarray`` (``numpy._core`` since NumPy 2). One frame, so fix its length."""
    old, new = b"\x8c\x16numpy._core.multiarray", b"\x8c\x15numpy.core.multiarray"
    assert data[:2] == b"\x80\x04" and data[2:3] == b"\x95" and data.count(old) == 1
    length = int.from_bytes(data[3:11], "little") - 1
    return data[:3] + length.to_bytes(8, "little") + data[11:].replace(old, new)


@pytest.mark.parametrize("name", MODELS)
def test_a_file_written_by_the_book_under_numpy1_loads(name, rng, tmp_path):
    _, ref_model = make_pair(name, np.float32, seed=1)
    randomize([ref_model], rng)
    data = pickle.dumps([p.astype(np.float16) for p in ref_model.params], protocol=4)
    (tmp_path / "book.pkl").write_bytes(as_numpy1_pickle(data))
    model, _ = make_pair(name, np.float32, seed=2)
    model.load_params(tmp_path / "book.pkl")
    for i, (p, q) in enumerate(zip(model.params, ref_model.params)):
        assert_array_equal(p, q.astype(np.float16).astype(np.float32), err_msg=f"params[{i}]")


@pytest.mark.parametrize("name", MODELS)
def test_files_move_between_fastseq_and_the_reference(name, rng, tmp_path):
    fast_model, ref_model = make_pair(name, np.float32, seed=1)
    randomize([fast_model], rng)
    fast_model.save_params(tmp_path / "fast.pkl")
    ref_model.load_params(tmp_path / "fast.pkl")
    for p, q in zip(ref_model.params, fast_model.params):
        assert_array_equal(p, q.astype(np.float16).astype(np.float32))
    randomize([ref_model], rng)
    ref_model.save_params(tmp_path / "ref.pkl")
    fast_model.load_params(tmp_path / "ref.pkl")
    for p, q in zip(fast_model.params, ref_model.params):
        assert_array_equal(p, q.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("name", MODELS)
def test_float64_model_loads_a_float16_file(name, rng, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source, _ = make_pair(name, np.float32, seed=1)
    randomize([source], rng)
    source.save_params()
    model, _ = make_pair(name, np.float64, seed=2)
    ids = [id(p) for p in model.params]
    model.load_params()
    assert [id(p) for p in model.params] == ids
    for p, q in zip(model.params, source.params):
        assert p.dtype == np.float64
        assert_array_equal(p, q.astype(np.float16).astype(np.float64))
    # and the float64 model runs (its kernels see float64 weights)
    loss = model.forward(questions(rng, 2), answers(rng, 2))
    assert np.isfinite(loss)


@pytest.mark.parametrize("name", MODELS)
def test_load_casts_a_float32_or_float64_file_to_the_models_dtype(name, rng, tmp_path):
    """Files of other float dtypes (a float32 pickle) load too, cast to the model's dtype."""
    values = [rng.standard_normal(s) for s in PARAM_SHAPES[name]]
    for file_dtype in (np.float32, np.float64):
        with open(tmp_path / "w.pkl", "wb") as f:
            pickle.dump([v.astype(file_dtype) for v in values], f)
        for dtype in DTYPES:
            model, _ = make_pair(name, dtype)
            model.load_params(tmp_path / "w.pkl")
            for p, v in zip(model.params, values):
                assert p.dtype == np.dtype(dtype)
                assert_array_equal(p, v.astype(file_dtype).astype(dtype))


# ------------------------------------------------------------------- one training step

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", MODELS)
def test_training_steps_match_reference(name, dtype, rng, threads):
    """Three steps of forward, backward, clip_grads (the norm above max_grad, so it scales) and
    Adam: fastseq's optimizers on the fast model vs the reference's on the twin."""
    fast_model, ref_model = make_pair(name, dtype)
    fast_opt, ref_opt = fastseq.Adam(lr=0.01), reference.Adam(lr=0.01)
    max_grad = 0.05
    for step in range(3):
        xs, ts = questions(rng, 5, layout="reversed"), answers(rng, 5)
        losses = [m.forward(xs, ts) for m in (fast_model, ref_model)]
        rtol, atol = tolerances(dtype)
        assert_allclose(float(losses[0]), float(losses[1]), rtol=rtol, atol=atol,
                        err_msg=f"loss at step {step}")
        fast_model.backward()
        ref_model.backward()
        norm = fastseq.clip_grads(fast_model.grads, max_grad)
        assert norm > max_grad, "the test wants clip_grads to scale"
        reference.clip_grads(ref_model.grads, max_grad)
        for i, (g, g_ref) in enumerate(zip(fast_model.grads, ref_model.grads)):
            assert_close(g, g_ref, dtype, err_msg=f"clipped grads[{i}] at step {step}")
        fast_opt.update(fast_model.params, fast_model.grads)
        ref_opt.update(ref_model.params, ref_model.grads)
        for i, (p, p_ref) in enumerate(zip(fast_model.params, ref_model.params)):
            assert_close(p, p_ref, dtype, err_msg=f"params[{i}] after step {step}")
    assert fast_opt.iter == ref_opt.iter == 3


@pytest.mark.parametrize("name", MODELS)
def test_sgd_step_matches_reference(name, rng):
    fast_model, ref_model = make_pair(name, np.float64)
    xs, ts = questions(rng, 3), answers(rng, 3)
    for model, opt in ((fast_model, fastseq.SGD(lr=0.5)), (ref_model, reference.SGD(lr=0.5))):
        model.forward(xs, ts)
        model.backward()
        opt.update(model.params, model.grads)
    for i, (p, p_ref) in enumerate(zip(fast_model.params, ref_model.params)):
        assert_allclose(p, p_ref, rtol=RTOL64, atol=1e-12, err_msg=f"params[{i}]")
