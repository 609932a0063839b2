"""Tests of fastseq.reference, the plain NumPy oracle, against finite differences and hand facts.

Shapes: N batch, T time steps, D input width, H hidden width, V vocabulary.
Gradient checks run at float64 on tiny shapes with loss = sum(out * dout) for a seeded dout.
"""
import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from fastseq.reference import (
    SGD,
    Adam,
    AttentionDecoder,
    AttentionEncoder,
    AttentionSeq2seq,
    Decoder,
    Encoder,
    PeekyDecoder,
    PeekySeq2seq,
    Seq2seq,
    TimeAffine,
    TimeAttention,
    TimeEmbedding,
    TimeLSTM,
    TimeSoftmaxWithLoss,
    clip_grads,
)

# Central differences at float64: truncation ~EPS**2, round-off ~1e-16 / EPS.
EPS = 1e-6
GRAD_RTOL = 1e-5
GRAD_ATOL = 1e-8
# Exact-arithmetic facts evaluated in floating point (e.g. sigmoid(40) == 1 - 4e-18).
FACT_ATOL = 1e-12

N, T, D, H, V = 2, 3, 4, 5, 7
MODEL_V, MODEL_D, MODEL_H = 7, 3, 4
MODELS = [Seq2seq, PeekySeq2seq, AttentionSeq2seq]


@pytest.fixture
def rng():
    return np.random.default_rng(20240607)


@pytest.fixture
def global_rng():
    """Lets a test seed the legacy global RNG; restores its state afterwards."""
    state = np.random.get_state()
    try:
        yield np.random
    finally:
        np.random.set_state(state)


def numerical_grad(loss_fn, x):
    """Central-difference gradient of the scalar loss_fn() with respect to x, perturbed in place."""
    grad = np.zeros(x.shape, dtype=np.float64)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + EPS
        loss_plus = float(loss_fn())
        x[idx] = old - EPS
        loss_minus = float(loss_fn())
        x[idx] = old
        grad[idx] = (loss_plus - loss_minus) / (2 * EPS)
    return grad


def check_grads(loss_fn, analytic, arrays, names):
    """analytic[k] must equal the numerical gradient of loss_fn() w.r.t. arrays[k]."""
    analytic = [np.array(g, copy=True) for g in analytic]
    for g, x, name in zip(analytic, arrays, names, strict=True):
        assert g.shape == x.shape, name
        num = numerical_grad(loss_fn, x)
        assert_allclose(g, num, rtol=GRAD_RTOL, atol=GRAD_ATOL, err_msg=name)


def make_model(cls, seed=0, dtype=np.float64):
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        return cls(MODEL_V, MODEL_D, MODEL_H, dtype=dtype)
    finally:
        np.random.set_state(state)


# ----------------------------------------------------------------------------------------------
# Layer gradient checks (float64, N=2, T=3, D=4, H=5, V=7)


def test_embedding_grad(rng):
    W = rng.normal(size=(V, D))
    xs = np.array([[1, 3, 1], [6, 1, 0]])  # repeated ids must accumulate
    dout = rng.normal(size=(N, T, D))
    layer = TimeEmbedding(W)

    def loss():
        return np.sum(layer.forward(xs) * dout)

    loss()
    assert layer.backward(dout) is None
    check_grads(loss, layer.grads, layer.params, ["W"])


@pytest.mark.parametrize("shape", [(N, T, D, H), (1, 1, 3, 1), (3, 2, 2, 6)])
@pytest.mark.parametrize("from_state", [False, True])
def test_lstm_grad(rng, shape, from_state):
    n, t, d, h = shape
    Wx = rng.normal(size=(d, 4 * h))
    Wh = rng.normal(size=(h, 4 * h))
    b = rng.normal(size=4 * h)
    xs = rng.normal(size=(n, t, d))
    h0 = rng.normal(size=(n, h)) if from_state else np.zeros((n, h))
    c0 = rng.normal(size=(n, h)) if from_state else None
    dhs = rng.normal(size=(n, t, h))
    layer = TimeLSTM(Wx, Wh, b, stateful=True)

    def loss():
        layer.set_state(h0, c0)
        return np.sum(layer.forward(xs) * dhs)

    loss()
    dxs = layer.backward(dhs)
    check_grads(
        loss,
        [*layer.grads, dxs, layer.dh],
        [Wx, Wh, b, xs, h0],
        ["Wx", "Wh", "b", "xs", "h0"],
    )


def test_affine_grad(rng):
    W = rng.normal(size=(D, V))
    b = rng.normal(size=V)
    x = rng.normal(size=(N, T, D))
    dout = rng.normal(size=(N, T, V))
    layer = TimeAffine(W, b)

    def loss():
        return np.sum(layer.forward(x) * dout)

    loss()
    dx = layer.backward(dout)
    check_grads(loss, [*layer.grads, dx], [W, b, x], ["W", "b", "x"])


@pytest.mark.parametrize("with_ignored", [False, True])
def test_softmax_with_loss_grad(rng, with_ignored):
    xs = rng.normal(size=(N, T, V)) * 3
    ts = rng.integers(0, V, size=(N, T))
    if with_ignored:
        ts[0, 1] = ts[1, 2] = -1
    dout = rng.normal()
    layer = TimeSoftmaxWithLoss()

    def loss():
        return layer.forward(xs, ts) * dout

    loss()
    dxs = layer.backward(dout)
    check_grads(loss, [dxs], [xs], ["xs"])


def test_attention_grad(rng):
    Ts, Td = 4, T
    hs_enc = rng.normal(size=(N, Ts, H))
    hs_dec = rng.normal(size=(N, Td, H))
    dout = rng.normal(size=(N, Td, H))
    layer = TimeAttention()

    def loss():
        return np.sum(layer.forward(hs_enc, hs_dec) * dout)

    loss()
    dhs_enc, dhs_dec = layer.backward(dout)
    check_grads(loss, [dhs_enc, dhs_dec], [hs_enc, hs_dec], ["hs_enc", "hs_dec"])


# ----------------------------------------------------------------------------------------------
# Model gradient checks (float64, V=7, D=3, H=4, T=3)


@pytest.mark.parametrize("cls", MODELS)
def test_model_loss_grad(rng, cls):
    model = make_model(cls)
    for p in model.params:  # O(1) random weights (and biases) make the check sharper
        p[...] = rng.normal(scale=0.5, size=p.shape)
    xs = rng.integers(0, MODEL_V, size=(N, T))
    ts = rng.integers(0, MODEL_V, size=(N, T + 1))
    ts[1, -1] = -1  # an ignored target (never a decoder input)

    def loss():
        return model.forward(xs, ts)

    loss()
    model.backward()
    names = [f"params[{i}]" for i in range(len(model.params))]
    check_grads(loss, model.grads, model.params, names)


@pytest.mark.parametrize("cls", [Decoder, PeekyDecoder])
def test_decoder_dh_grad(rng, cls):
    dec = make_model(cls)
    xs = rng.integers(0, MODEL_V, size=(N, T))
    h = rng.normal(size=(N, MODEL_H))
    dscore = rng.normal(size=(N, T, MODEL_V))

    def loss():
        return np.sum(dec.forward(xs, h) * dscore)

    loss()
    dh = dec.backward(dscore)
    check_grads(loss, [dh], [h], ["h"])


def test_attention_decoder_enc_hs_grad(rng):
    dec = make_model(AttentionDecoder)
    xs = rng.integers(0, MODEL_V, size=(N, T))
    enc_hs = rng.normal(size=(N, 4, MODEL_H))
    dscore = rng.normal(size=(N, T, MODEL_V))

    def loss():
        return np.sum(dec.forward(xs, enc_hs) * dscore)

    loss()
    denc_hs = dec.backward(dscore)
    check_grads(loss, [denc_hs], [enc_hs], ["enc_hs"])


# ----------------------------------------------------------------------------------------------
# TimeLSTM facts


def gate_bias(f, g, i, o, h):
    """Bias (4H,) with the given constant pre-activation per gate block, in the order f, g, i, o."""
    return np.concatenate([np.full(h, f), np.full(h, g), np.full(h, i), np.full(h, o)])


def zero_weight_lstm(b, h=H, d=D):
    return TimeLSTM(np.zeros((d, 4 * h)), np.zeros((h, 4 * h)), b, stateful=True)


def test_lstm_gate_order_forget_gate_keeps_c(rng):
    c0 = rng.normal(size=(N, H))
    lstm = zero_weight_lstm(gate_bias(f=40, g=0.7, i=-40, o=0.0, h=H))
    lstm.set_state(rng.normal(size=(N, H)), c0)
    hs = lstm.forward(rng.normal(size=(N, T, D)))
    assert_allclose(lstm.c, c0, atol=FACT_ATOL)  # c = 1 * c_prev + g * 0
    assert_allclose(hs[:, -1], 0.5 * np.tanh(c0), atol=FACT_ATOL)  # o = sigmoid(0) = 1/2


def test_lstm_gate_order_input_and_output_gates(rng):
    lstm = zero_weight_lstm(gate_bias(f=-40, g=0.7, i=40, o=40, h=H))
    lstm.set_state(rng.normal(size=(N, H)), rng.normal(size=(N, H)))
    hs = lstm.forward(rng.normal(size=(N, T, D)))
    assert_allclose(lstm.c, np.tanh(0.7), atol=FACT_ATOL)  # c = 0 * c_prev + tanh(0.7) * 1
    assert_allclose(hs, np.tanh(np.tanh(0.7)), atol=FACT_ATOL)  # o = 1

    closed = zero_weight_lstm(gate_bias(f=-40, g=0.7, i=40, o=-40, h=H))
    assert_allclose(closed.forward(rng.normal(size=(N, T, D))), 0, atol=FACT_ATOL)  # o = 0


def lstm_weights(rng, d=D, h=H):
    return rng.normal(size=(d, 4 * h)), rng.normal(size=(h, 4 * h)), rng.normal(size=4 * h)


def test_lstm_stateful_carries_over(rng):
    weights = lstm_weights(rng)
    xs = rng.normal(size=(N, T, D))
    whole = TimeLSTM(*weights).forward(xs)

    stateful = TimeLSTM(*weights, stateful=True)
    parts = np.concatenate([stateful.forward(xs[:, :2]), stateful.forward(xs[:, 2:])], axis=1)
    assert_allclose(parts, whole, rtol=1e-14, atol=1e-15)
    assert_array_equal(stateful.h, parts[:, -1])

    stateless = TimeLSTM(*weights, stateful=False)
    first = stateless.forward(xs)
    assert_array_equal(stateless.forward(xs), first)  # restarts from zeros every time


def test_lstm_set_state_without_c_starts_c_at_zero(rng):
    weights = lstm_weights(rng)
    xs = rng.normal(size=(N, T, D))
    h0 = rng.normal(size=(N, H))
    a = TimeLSTM(*weights, stateful=True)
    a.set_state(h0)
    assert a.c is None
    b = TimeLSTM(*weights, stateful=True)
    b.set_state(h0, np.zeros((N, H)))
    assert_array_equal(a.forward(xs), b.forward(xs))


def test_lstm_state_lifecycle(rng):
    weights = lstm_weights(rng)
    xs = rng.normal(size=(N, T, D))
    lstm = TimeLSTM(*weights, stateful=True)
    assert lstm.h is None and lstm.c is None
    first = lstm.forward(xs)
    assert lstm.h.shape == lstm.c.shape == (N, H)
    lstm.reset_state()
    assert lstm.h is None and lstm.c is None
    assert_array_equal(lstm.forward(xs), first)

    # not stateful: a state set beforehand is ignored, as in the book
    stateless = TimeLSTM(*weights, stateful=False)
    stateless.set_state(rng.normal(size=(N, H)), rng.normal(size=(N, H)))
    assert_array_equal(stateless.forward(xs), first)


def test_lstm_accepts_reversed_view_and_backward_is_repeatable(rng):
    weights = lstm_weights(rng)
    xs = rng.normal(size=(N, T, D))
    dhs = rng.normal(size=(N, T, H))
    lstm = TimeLSTM(*weights)
    ref = lstm.forward(np.ascontiguousarray(xs[:, ::-1]))
    assert_array_equal(lstm.forward(xs[:, ::-1]), ref)
    dxs = lstm.backward(dhs)
    grads = [g.copy() for g in lstm.grads]
    assert_array_equal(lstm.backward(dhs), dxs)
    for g, g_again in zip(grads, lstm.grads):
        assert_array_equal(g_again, g)


# ----------------------------------------------------------------------------------------------
# TimeEmbedding, TimeAttention facts


def test_embedding_forward_rows_and_repeated_ids(rng):
    W = rng.normal(size=(V, D))
    xs = np.full((N, T), 4)
    layer = TimeEmbedding(W)
    assert_array_equal(layer.forward(xs), np.broadcast_to(W[4], (N, T, D)))
    dout = rng.normal(size=(N, T, D))
    layer.backward(dout)
    expected = np.zeros_like(W)
    expected[4] = dout.sum(axis=(0, 1))
    assert_allclose(layer.grads[0], expected, rtol=1e-14)


def test_attention_weights_and_sharp_focus(rng):
    Ts, Td = 4, 3
    hs_enc = 50 * np.eye(H)[:Ts][None].repeat(N, axis=0)  # step s is 50 * e_s
    hs_dec = np.eye(H)[[2, 0, 3]][None].repeat(N, axis=0)  # step t looks for e_k
    layer = TimeAttention()
    cs = layer.forward(hs_enc, hs_dec)
    assert len(layer.attention_weights) == Td
    for t, k in enumerate([2, 0, 3]):
        a = layer.attention_weights[t]
        assert a.shape == (N, Ts)
        assert_allclose(a, np.eye(Ts)[k][None].repeat(N, axis=0), atol=1e-20)
        assert_allclose(cs[:, t], hs_enc[:, k], atol=1e-18)

    layer.forward(rng.normal(size=(N, Ts, H)), rng.normal(size=(N, Td, H)))
    assert_allclose(np.sum(layer.attention_weights, axis=2), 1, rtol=1e-14)


# ----------------------------------------------------------------------------------------------
# TimeSoftmaxWithLoss facts


def test_softmax_loss_ignored_labels(rng):
    xs = rng.normal(size=(N, T, V))
    ts = rng.integers(0, V, size=(N, T))
    ts[0, 0] = ts[1, 2] = -1
    layer = TimeSoftmaxWithLoss()
    loss = layer.forward(xs, ts)

    kept = [(n, t) for n in range(N) for t in range(T) if ts[n, t] != -1]
    by_hand = [-np.log(np.exp(xs[n, t, ts[n, t]]) / np.exp(xs[n, t]).sum()) for n, t in kept]
    assert_allclose(loss, np.mean(by_hand), rtol=1e-14)

    dxs = layer.backward()
    assert_array_equal(dxs[0, 0], 0)
    assert_array_equal(dxs[1, 2], 0)
    n, t = kept[0]
    expected = np.exp(xs[n, t]) / np.exp(xs[n, t]).sum()
    expected[ts[n, t]] -= 1
    assert_allclose(dxs[n, t], expected / len(kept), rtol=1e-13, atol=1e-16)


def test_softmax_loss_all_ignored_gives_zero():
    xs = np.ones((N, T, V))
    layer = TimeSoftmaxWithLoss()
    assert layer.forward(xs, np.full((N, T), -1)) == 0
    assert_array_equal(layer.backward(), 0)


def test_softmax_loss_one_hot_equals_int(rng):
    xs = rng.normal(size=(N, T, V))
    ts = rng.integers(0, V, size=(N, T))
    a, b = TimeSoftmaxWithLoss(), TimeSoftmaxWithLoss()
    assert a.forward(xs, ts) == b.forward(xs, np.eye(V, dtype=np.int32)[ts])
    assert_array_equal(a.backward(), b.backward())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_loss_finite_for_huge_scores(dtype):
    xs = np.zeros((N, T, V), dtype=dtype)
    xs[..., 0] = 1e4
    layer = TimeSoftmaxWithLoss()
    right = layer.forward(xs, np.zeros((N, T), dtype=np.int64))
    assert np.isfinite(right) and abs(right) < 1e-30
    wrong = layer.forward(xs, np.ones((N, T), dtype=np.int64))
    assert wrong.dtype == dtype
    assert_allclose(wrong, 1e4, rtol=1e-6)
    assert np.all(np.isfinite(layer.backward()))


def test_softmax_loss_backward_repeatable_and_scaled(rng):
    xs = rng.normal(size=(N, T, V)).astype(np.float32)
    ts = rng.integers(0, V, size=(N, T))
    layer = TimeSoftmaxWithLoss()
    layer.forward(xs, ts)
    first = layer.backward()
    assert first.dtype == np.float32
    assert_array_equal(layer.backward(), first)
    assert_allclose(layer.backward(2.0), 2 * first, rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# Models: init, identity, dtype, save/load, generate


def book_draws(cls, V, D, H, dtype):
    """The DESIGN.md formulas, drawn in order from the (already seeded) global RNG."""
    rn = np.random.randn

    def draw(*shape, scale):
        return (rn(*shape) / scale).astype(dtype)

    def zeros(n):
        return np.zeros(n).astype(dtype)

    encoder = [draw(V, D, scale=100), draw(D, 4 * H, scale=np.sqrt(D)),
               draw(H, 4 * H, scale=np.sqrt(H)), zeros(4 * H)]
    if cls is PeekySeq2seq:
        decoder = [draw(V, D, scale=100), draw(H + D, 4 * H, scale=np.sqrt(H + D)),
                   draw(H, 4 * H, scale=np.sqrt(H)), zeros(4 * H),
                   draw(H + H, V, scale=np.sqrt(H + H)), zeros(V)]
    else:
        width = 2 * H if cls is AttentionSeq2seq else H
        decoder = [draw(V, D, scale=100), draw(D, 4 * H, scale=np.sqrt(D)),
                   draw(H, 4 * H, scale=np.sqrt(H)), zeros(4 * H),
                   draw(width, V, scale=np.sqrt(width)), zeros(V)]
    return encoder + decoder


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls", MODELS)
def test_init_matches_book_formulas_bit_for_bit(global_rng, cls, dtype):
    sizes = (11, 6, 5)
    global_rng.seed(1234)
    model = cls(*sizes) if dtype is np.float32 else cls(*sizes, dtype=dtype)
    after_model = global_rng.randn()
    global_rng.seed(1234)
    expected = book_draws(cls, *sizes, dtype)
    assert global_rng.randn() == after_model  # no extra or missing draws
    assert len(model.params) == len(expected)
    for i, (p, e) in enumerate(zip(model.params, expected)):
        assert p.dtype == e.dtype == dtype, i
        assert p.shape == e.shape, i
        assert p.tobytes() == e.tobytes(), f"params[{i}] differs from the book's draw"


@pytest.mark.parametrize("cls", MODELS)
def test_model_shares_arrays_with_layers(cls):
    model = make_model(cls)
    enc, dec = model.encoder, model.decoder
    layers = [enc.embed, enc.lstm, dec.embed, dec.lstm, dec.affine]
    from_layers = [p for layer in layers for p in layer.params]
    grads_from_layers = [g for layer in layers for g in layer.grads]
    assert len(model.params) == len(model.grads) == 10
    assert all(a is b for a, b in zip(model.params, from_layers))
    assert all(a is b for a, b in zip(model.grads, grads_from_layers))
    for p, g in zip(model.params, model.grads):
        assert g.shape == p.shape and g.dtype == p.dtype and not np.any(g)
    assert isinstance(enc, AttentionEncoder if cls is AttentionSeq2seq else Encoder)


@pytest.mark.parametrize("cls", MODELS)
def test_model_float32_end_to_end(rng, cls):
    model = make_model(cls, dtype=np.float32)
    xs = rng.integers(0, MODEL_V, size=(N, 5))
    ts = rng.integers(0, MODEL_V, size=(N, 4))
    loss = model.forward(xs, ts)
    model.backward()
    assert loss.dtype == np.float32 and np.isfinite(loss)
    for p, g in zip(model.params, model.grads):
        assert p.dtype == g.dtype == np.float32
        assert np.all(np.isfinite(g))

    ref = make_model(cls, dtype=np.float64)  # same seed: the float64 draws before the cast
    for p64, p32 in zip(ref.params, model.params):
        p64[...] = p32  # the very same weights, computed in float64
    assert_allclose(loss, ref.forward(xs, ts), rtol=1e-5)


@pytest.mark.parametrize("cls", MODELS)
def test_save_load_round_trip(tmp_path, monkeypatch, cls):
    model = make_model(cls, seed=1, dtype=np.float32)
    path = tmp_path / "model.pkl"
    model.save_params(path)
    with open(path, "rb") as f:
        stored = pickle.load(f)
    assert isinstance(stored, list) and all(s.dtype == np.float16 for s in stored)

    other = make_model(cls, seed=2, dtype=np.float32)
    before = [id(p) for p in other.params]
    other.load_params(path)
    assert [id(p) for p in other.params] == before  # written in place
    assert all(a is b for a, b in zip(other.params, other.encoder.params + other.decoder.params))
    for p, q in zip(other.params, model.params):
        assert p.dtype == np.float32
        assert_array_equal(p, q.astype(np.float16).astype(np.float32))

    wide = make_model(cls, seed=3, dtype=np.float64)
    wide.load_params(path)
    for p, q in zip(wide.params, model.params):
        assert p.dtype == np.float64
        assert_array_equal(p, q.astype(np.float16))

    monkeypatch.chdir(tmp_path)
    model.save_params()
    assert (tmp_path / f"{cls.__name__}.pkl").exists()
    other.load_params()


def test_load_params_rejects_other_model(tmp_path):
    path = tmp_path / "seq.pkl"
    make_model(Seq2seq).save_params(path)
    with pytest.raises(ValueError, match="params\\[5\\]"):
        make_model(PeekySeq2seq).load_params(path)


@pytest.mark.parametrize("cls", MODELS)
def test_generate_single_row_is_list_of_ints(rng, cls):
    model = make_model(cls)
    xs = rng.integers(0, MODEL_V, size=(1, 5))
    ids = model.generate(xs, 3, 6)
    assert isinstance(ids, list) and len(ids) == 6
    assert all(type(i) is int and 0 <= i < MODEL_V for i in ids)
    assert model.generate(xs, 3, 0) == []


@pytest.mark.parametrize("cls", MODELS)
def test_generate_batch_equals_row_by_row(rng, cls):
    model = make_model(cls)
    for p in model.params:  # O(1) weights so the ids vary
        p[...] = rng.normal(size=p.shape)
    xs = rng.integers(0, MODEL_V, size=(4, 5))
    ids = model.generate(xs, 3, 6)
    assert isinstance(ids, np.ndarray) and ids.dtype == np.int64 and ids.shape == (4, 6)
    for n in range(4):
        assert ids[n].tolist() == model.generate(xs[n : n + 1], 3, 6)
    empty = model.generate(xs, 3, 0)
    assert empty.shape == (4, 0) and empty.dtype == np.int64


@pytest.mark.parametrize("cls", MODELS)
def test_generate_is_greedy_over_full_forward(rng, cls):
    """Each generated id is the argmax of a full decoder forward on the prefix so far."""
    model = make_model(cls)
    for p in model.params:
        p[...] = rng.normal(size=p.shape)
    xs = rng.integers(0, MODEL_V, size=(3, 5))
    start_id, sample_size = 2, 5
    ids = model.generate(xs, start_id, sample_size)
    state = model.encoder.forward(xs)
    prefix = np.full((3, 1), start_id)
    for t in range(sample_size):
        score = model.decoder.forward(prefix, state)[:, -1]
        assert_array_equal(score.argmax(axis=1), ids[:, t])
        prefix = np.concatenate([prefix, ids[:, t : t + 1]], axis=1)


def test_attention_decoder_keeps_weights(rng):
    model = make_model(AttentionSeq2seq)
    xs = rng.integers(0, MODEL_V, size=(N, 5))
    ts = rng.integers(0, MODEL_V, size=(N, 4))
    model.forward(xs, ts)
    weights = model.decoder.attention_weights
    assert len(weights) == 3 and all(w.shape == (N, 5) for w in weights)
    model.generate(xs, 1, 6)
    weights = model.decoder.attention_weights
    assert len(weights) == 6 and all(w.shape == (N, 5) for w in weights)
    assert_allclose(np.sum(weights, axis=2), 1, rtol=1e-14)


# ----------------------------------------------------------------------------------------------
# Optimizers and clipping


def test_sgd_updates_in_place(rng):
    params = [rng.normal(size=(3, 4)), rng.normal(size=5)]
    grads = [rng.normal(size=(3, 4)), rng.normal(size=5)]
    expected = [p - 0.1 * g for p, g in zip(params, grads)]
    objects = list(params)
    SGD(lr=0.1).update(params, grads)
    assert all(a is b for a, b in zip(params, objects))
    for p, e in zip(params, expected):
        assert_allclose(p, e, rtol=1e-15)


def test_adam_matches_formula(rng):
    lr, beta1, beta2 = 0.01, 0.8, 0.99
    params = [rng.normal(size=(3, 4)), rng.normal(size=5)]
    objects = list(params)
    expected = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    adam = Adam(lr=lr, beta1=beta1, beta2=beta2)
    for step in (1, 2, 3):
        grads = [rng.normal(size=p.shape) for p in params]
        adam.update(params, grads)
        lr_t = lr * np.sqrt(1 - beta2**step) / (1 - beta1**step)
        for k, g in enumerate(grads):
            m[k] = m[k] + (1 - beta1) * (g - m[k])
            v[k] = v[k] + (1 - beta2) * (g * g - v[k])
            expected[k] = expected[k] - lr_t * m[k] / (np.sqrt(v[k]) + 1e-7)
    assert all(a is b for a, b in zip(params, objects))
    for p, e in zip(params, expected):
        assert_allclose(p, e, rtol=1e-13)


def test_clip_grads_scales_in_place():
    grads = [np.full((2, 2), 1.0), np.array([3.0, 4.0, 0.0])]  # norm sqrt(4 + 25) = sqrt(29)
    objects = list(grads)
    clip_grads(grads, 1.0)
    assert all(a is b for a, b in zip(grads, objects))
    norm = np.sqrt(sum(np.sum(g**2) for g in grads))
    assert_allclose(norm, 1.0 * np.sqrt(29) / (np.sqrt(29) + 1e-6), rtol=1e-14)

    small = [np.array([0.3, 0.4])]
    clip_grads(small, 1.0)
    assert_array_equal(small[0], [0.3, 0.4])
