"""The book's interface contract (DESIGN.md, "The interface contract"), checked on the fast layers.

Shapes: N batch, T time steps (Ts encoder, Td decoder steps), D input width, H hidden width,
V vocabulary, M affine output width.

params/grads are lists of the very arrays given (grads zeros_like them), never rebound: every
array keeps its id() across forward and backward and grads are written in place. Backward is
repeatable; returned arrays are fresh; dtypes follow the weights; the state attributes behave
like the book's; in-place parameter updates (an optimizer) take effect at the next call.
"""
import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastseq
import fastseq.layers as fast
import fastseq.reference.layers as ref
from conftest import DTYPES, assert_close

N, T, D, H, V, M = 3, 4, 5, 6, 7, 8
Ts, Td = 5, 3
LR = 0.1


def _weights(name, rng, dtype):
    """The constructor arguments of one layer (fresh arrays)."""
    shapes = {"TimeEmbedding": [(V, D)], "TimeLSTM": [(D, 4 * H), (H, 4 * H), (4 * H,)],
              "TimeAffine": [(D, M), (M,)], "TimeSoftmaxWithLoss": [], "TimeAttention": []}[name]
    return [(rng.standard_normal(s) / 2).astype(dtype) for s in shapes]


def _data(name, dtype, k=0):
    """(forward args, backward arg) of one layer, seeded by (k, name): k varies the values."""
    rng = np.random.default_rng([k, len(name)])
    f = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    if name == "TimeEmbedding":
        return (rng.integers(0, V, (N, T)),), f(N, T, D)
    if name == "TimeLSTM":
        return (f(N, T, D),), f(N, T, H)
    if name == "TimeAffine":
        return (f(N, T, D),), f(N, T, M)
    if name == "TimeSoftmaxWithLoss":
        ts = rng.integers(0, V, (N, T))
        ts[0, 0] = -1
        return (f(N, T, V), ts), 1.0
    if name == "TimeAttention":
        return (f(N, Ts, H), f(N, Td, H)), f(N, Td, H)
    raise AssertionError(name)


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


LAYERS = ["TimeEmbedding", "TimeLSTM", "TimeAffine", "TimeSoftmaxWithLoss", "TimeAttention"]
WEIGHTED = ["TimeEmbedding", "TimeLSTM", "TimeAffine"]


# ------------------------------------------------------------------- params, grads, identity

@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_params_and_grads_are_lists_of_the_given_arrays(name, dtype, rng):
    weights = _weights(name, rng, dtype)
    layer = getattr(fast, name)(*weights)
    assert type(layer.params) is list and type(layer.grads) is list
    assert len(layer.params) == len(layer.grads) == len(weights)
    for w, p, g in zip(weights, layer.params, layer.grads):
        assert p is w  # the layer holds the caller's array, so a model shares it
        assert g is not p and not np.shares_memory(g, p)
        assert g.shape == p.shape and g.dtype == p.dtype
        assert g.flags.c_contiguous
        assert_array_equal(g, 0)


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_param_and_grad_ids_never_change(name, dtype, rng, threads):
    layer = getattr(fast, name)(*_weights(name, rng, dtype))
    params_list, grads_list = layer.params, layer.grads
    ids = [id(a) for a in layer.params + layer.grads]
    for k in range(2):
        args, dout = _data(name, dtype, k)
        layer.forward(*args)
        layer.backward(dout)
        assert layer.params is params_list and layer.grads is grads_list
        assert [id(a) for a in layer.params + layer.grads] == ids
    for g in layer.grads:  # grads were written in place (not left at zero)
        assert np.abs(g).sum() > 0


# ------------------------------------------------------------------- repeatable backward

@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_is_repeatable(name, dtype, rng, threads):
    layer = getattr(fast, name)(*_weights(name, rng, dtype))
    args, dout = _data(name, dtype)
    layer.forward(*args)
    state = [np.array(getattr(layer, a)) for a in ("h", "c") if hasattr(layer, a)]
    first = [np.array(x) for x in _as_tuple(layer.backward(dout)) if x is not None]
    first_grads = [g.copy() for g in layer.grads]
    first_dh = np.array(layer.dh) if name == "TimeLSTM" else None
    second = [np.array(x) for x in _as_tuple(layer.backward(dout)) if x is not None]
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert_array_equal(a, b)
    for a, b in zip(first_grads, layer.grads):
        assert_array_equal(a, b)  # written, not accumulated
    if name == "TimeLSTM":
        assert_array_equal(first_dh, layer.dh)
    for before, attr in zip(state, ("h", "c")):
        assert_array_equal(before, getattr(layer, attr))


@pytest.mark.parametrize("name", LAYERS)
def test_backward_after_another_backward_with_other_dout_matches_reference(name, rng, threads):
    """backward(d1) then backward(d2) gives what the reference gives for backward(d2): the first
    call left the forward's saved arrays untouched."""
    dtype = np.float64
    weights = _weights(name, rng, dtype)
    args, d1 = _data(name, dtype)
    _, d2 = _data(name, dtype, k=1)
    if name == "TimeSoftmaxWithLoss":
        d1, d2 = 1.0, 0.3
    got_layer = getattr(fast, name)(*[w.copy() for w in weights])
    want_layer = getattr(ref, name)(*[w.copy() for w in weights])
    got_layer.forward(*args)
    want_layer.forward(*args)
    got_layer.backward(d1)
    got = _as_tuple(got_layer.backward(d2))
    want = _as_tuple(want_layer.backward(d2))
    for g, w in zip(got, want):
        if w is not None:
            assert_close(g, w, dtype)
    for g, w in zip(got_layer.grads, want_layer.grads):
        assert_close(g, w, dtype)


# ------------------------------------------------------------------- fresh results

@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_returned_arrays_are_fresh(name, dtype, rng, threads):
    """Arrays returned by one call (and the state/weights attributes it left) do not change
    when the layer runs again, and editing them does not change the layer's next results."""
    weights = _weights(name, rng, dtype)
    layer = getattr(fast, name)(*weights)
    args1, d1 = _data(name, dtype, 1)
    args2, d2 = _data(name, dtype, 2)
    out1 = layer.forward(*args1)
    kept = {"out": out1}
    if name == "TimeLSTM":
        kept.update(h=layer.h, c=layer.c)
    if name == "TimeAttention":
        kept.update({f"weights{t}": w for t, w in enumerate(layer.attention_weights)})
    back1 = _as_tuple(layer.backward(d1))
    kept.update({f"back{i}": x for i, x in enumerate(back1) if x is not None})
    if name == "TimeLSTM":
        kept["dh"] = layer.dh
    copies = {k: np.array(v) for k, v in kept.items()}
    layer.forward(*args2)
    layer.backward(d2)
    for k, v in kept.items():
        assert_array_equal(v, copies[k], err_msg=f"{k} changed after a second forward/backward")

    # editing a returned hs must not change the layer's state or its backward
    if name == "TimeLSTM":
        twin = fast.TimeLSTM(*[w.copy() for w in weights])
        hs = layer.forward(*args1)
        want_hs = twin.forward(*args1)
        h, c = layer.h.copy(), layer.c.copy()
        hs[...] = 7.0
        assert_array_equal(layer.h, h)
        assert_array_equal(layer.c, c)
        assert_array_equal(layer.backward(d1), twin.backward(d1))
        assert_array_equal(layer.dh, twin.dh)
        assert not np.shares_memory(want_hs, twin.h)


# ------------------------------------------------------------------- dtypes

def test_float32_is_the_books_default(rng):
    """Weights made as in the book ((randn(...) / 100).astype('f')) give float32 everywhere."""
    for name in LAYERS:
        layer = getattr(fast, name)(*[(w / 100).astype("f") for w in _weights(name, rng, np.float64)])
        args, _ = _data(name, np.float32)
        out = layer.forward(*args)
        if name != "TimeSoftmaxWithLoss":
            assert out.dtype == np.float32, name


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_array_keeps_the_weights_dtype(name, dtype, rng, threads):
    weights = _weights(name, rng, dtype)
    layer = getattr(fast, name)(*weights)
    args, dout = _data(name, dtype)
    out = layer.forward(*args)
    if name == "TimeSoftmaxWithLoss":
        assert np.ndim(out) == 0 and np.isfinite(out)
    else:
        assert out.dtype == dtype
    back = [x for x in _as_tuple(layer.backward(dout)) if x is not None]
    assert all(x.dtype == dtype for x in back)
    assert all(p.dtype == dtype for p in layer.params)  # weights never re-cast
    assert all(g.dtype == dtype for g in layer.grads)
    if name == "TimeLSTM":
        assert layer.h.dtype == layer.c.dtype == layer.dh.dtype == dtype
    if name == "TimeAttention":
        assert all(w.dtype == dtype for w in layer.attention_weights)


# ------------------------------------------------------------------- state attributes

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stateful", [False, True])
def test_lstm_state_attributes(stateful, dtype, rng, threads):
    Wx, Wh, b = _weights("TimeLSTM", rng, dtype)
    layer = fast.TimeLSTM(Wx, Wh, b, stateful=stateful)
    twin = ref.TimeLSTM(Wx.copy(), Wh.copy(), b.copy(), stateful=stateful)
    assert layer.stateful is stateful
    assert layer.h is None and layer.c is None and layer.dh is None
    assert fast.TimeLSTM(Wx, Wh, b).stateful is False  # the book's default
    (xs,), dhs = _data("TimeLSTM", dtype)
    for k in range(2):  # the second forward continues (stateful) or restarts (not)
        hs = layer.forward(xs)
        want_hs = twin.forward(xs)
        assert_close(hs, want_hs, dtype)
        assert layer.h.shape == layer.c.shape == (N, H)
        assert_array_equal(layer.h, hs[:, -1])  # h is the last step
        assert_close(layer.c, twin.c, dtype)
        layer.backward(dhs)
        twin.backward(dhs)
        assert layer.dh.shape == (N, H)
        assert_close(layer.dh, twin.dh, dtype)
    layer.reset_state()
    assert layer.h is None and layer.c is None


@pytest.mark.parametrize("dtype", DTYPES)
def test_lstm_set_state(dtype, rng):
    Wx, Wh, b = _weights("TimeLSTM", rng, dtype)
    layer = fast.TimeLSTM(Wx, Wh, b, stateful=True)
    h0 = rng.standard_normal((N, H)).astype(dtype)
    c0 = rng.standard_normal((N, H)).astype(dtype)
    layer.set_state(h0)
    assert_array_equal(layer.h, h0)
    assert layer.c is None  # c=None: the next forward starts c from zeros
    layer.set_state(h0, c0)
    assert_array_equal(layer.h, h0)
    assert_array_equal(layer.c, c0)
    h0_before, c0_before = h0.copy(), c0.copy()
    layer.forward(_data("TimeLSTM", dtype)[0][0])
    layer.backward(_data("TimeLSTM", dtype)[1])
    assert_array_equal(h0, h0_before)  # the caller's arrays are read, never written
    assert_array_equal(c0, c0_before)


def test_softmax_with_loss_attributes():
    layer = fast.TimeSoftmaxWithLoss()
    assert layer.ignore_label == -1
    assert layer.params == [] and layer.grads == []


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_weights_are_a_list_of_distributions(dtype, rng, threads):
    layer = fast.TimeAttention()
    assert layer.params == [] and layer.grads == []
    assert layer.attention_weights is None
    (hs_enc, hs_dec), _ = _data("TimeAttention", dtype)
    layer.forward(hs_enc, hs_dec)
    weights = layer.attention_weights
    assert type(weights) is list and len(weights) == Td
    for w in weights:
        assert w.shape == (N, Ts) and w.dtype == dtype
        assert (w >= 0).all()
        np.testing.assert_allclose(w.sum(axis=1), 1, rtol=0, atol=10 * np.finfo(dtype).eps)
    want = ref.TimeAttention()
    want.forward(hs_enc, hs_dec)
    for got_w, want_w in zip(weights, want.attention_weights):
        assert_close(got_w, want_w, dtype)


# ------------------------------------------------------------------- in-place updates

@pytest.mark.parametrize("name", WEIGHTED)
@pytest.mark.parametrize("dtype", DTYPES)
def test_in_place_updates_reach_the_next_call(name, dtype, rng, threads):
    """Like a training loop: forward, backward, p[...] -= lr * g on every param, three times.
    The fast layer follows the reference step by step, and after each update it computes
    exactly what a fresh layer built from the updated weights computes (no stale copy)."""
    weights = _weights(name, rng, dtype)
    got = getattr(fast, name)(*[w.copy() for w in weights])
    want = getattr(ref, name)(*[w.copy() for w in weights])
    for k in range(3):
        args, dout = _data(name, dtype, k)
        fresh = getattr(fast, name)(*[p.copy() for p in got.params])
        out = got.forward(*args)
        assert_close(out, want.forward(*args), dtype, err_msg=f"forward after {k} updates")
        assert_array_equal(out, fresh.forward(*args))
        back = got.backward(dout)
        want_back = want.backward(dout)
        fresh_back = fresh.backward(dout)
        if back is not None:
            assert_close(back, want_back, dtype)
            assert_array_equal(back, fresh_back)
        for g, w, f in zip(got.grads, want.grads, fresh.grads):
            assert_close(g, w, dtype)
            assert_array_equal(g, f)
        for layer in (got, want):
            for p, g in zip(layer.params, layer.grads):
                p[...] -= LR * g


@pytest.mark.parametrize("dtype", DTYPES)
def test_lstm_weight_update_between_forward_and_backward(dtype, rng, threads):
    """Backward uses the weights as they are when it runs (the reference reads its params at
    backward time), not a transposed copy made earlier."""
    weights = _weights("TimeLSTM", rng, dtype)
    got = fast.TimeLSTM(*[w.copy() for w in weights])
    want = ref.TimeLSTM(*[w.copy() for w in weights])
    for k in range(2):
        (xs,), dhs = _data("TimeLSTM", dtype, k)
        got.forward(xs)
        want.forward(xs)
        for layer in (got, want):
            layer.params[0][...] *= 0.5
            layer.params[1][...] = layer.params[1][::-1].copy()  # load_params-style write
        assert_close(got.backward(dhs), want.backward(dhs), dtype)
        assert_close(got.dh, want.dh, dtype)
        for g, w in zip(got.grads, want.grads):
            assert_close(g, w, dtype)


def test_models_can_share_a_layers_arrays(rng):
    """Two layers built on the same arrays (the book's weight sharing) see each other's
    in-place updates."""
    W = _weights("TimeEmbedding", rng, np.float32)[0]
    a, b = fast.TimeEmbedding(W), fast.TimeEmbedding(W)
    xs = np.array([[1, 2, 3]])
    a.params[0][...] += 1
    assert_array_equal(b.forward(xs), W[xs])
    assert fastseq.TimeEmbedding is fast.TimeEmbedding


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("counts", [(1, 2), (2, 1)], ids=["1then2", "2then1"])
def test_thread_count_may_change_between_forward_and_backward(name, counts, rng, thread_count):
    dtype = np.float64
    weights = _weights(name, rng, dtype)
    got = getattr(fast, name)(*[w.copy() for w in weights])
    want = getattr(ref, name)(*[w.copy() for w in weights])
    args, dout = _data(name, dtype)
    thread_count(counts[0])
    got.forward(*args)
    want.forward(*args)
    thread_count(counts[1])
    for g, w in zip(_as_tuple(got.backward(dout)), _as_tuple(want.backward(dout))):
        if w is not None:
            assert_close(g, w, dtype)
    for g, w in zip(got.grads, want.grads):
        assert_close(g, w, dtype)
