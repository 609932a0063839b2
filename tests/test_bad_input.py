"""Bad input to the fast layers (DESIGN.md, "Bad input").

Shapes: N batch, T time steps (Ts encoder, Td decoder steps), D input width, H hidden width,
V vocabulary, M affine output width.

Numba does not bounds-check, so the Python layer must reject every bad input before a kernel
sees it, with a TypeError / ValueError whose message names the argument. Each test matches
words naming the argument (and, where the design asks, the fix).
"""
import os

import numpy as np
import pytest

import fastseq
import fastseq.layers as fast
from fastseq import _checks

N, T, D, H, V, M = 3, 4, 5, 6, 7, 8
F32, F64 = np.float32, np.float64


def _lstm(dtype=F32, stateful=False, D=D, H=H):
    rng = np.random.default_rng(1)
    return fast.TimeLSTM(rng.standard_normal((D, 4 * H)).astype(dtype),
                         rng.standard_normal((H, 4 * H)).astype(dtype),
                         np.zeros(4 * H, dtype), stateful=stateful)


def _embedding(dtype=F32):
    return fast.TimeEmbedding(np.random.default_rng(2).standard_normal((V, D)).astype(dtype))


def _affine(dtype=F32):
    rng = np.random.default_rng(3)
    return fast.TimeAffine(rng.standard_normal((D, M)).astype(dtype), np.zeros(M, dtype))


def _floats(*shape, dtype=F32):
    return np.random.default_rng(4).standard_normal(shape).astype(dtype)


def _ids(*shape, high=V):
    return np.random.default_rng(5).integers(0, high, shape)


# ------------------------------------------------------------------- token ids

# Batch sizes whose ids the checks scan both ways: a few in Python, many with NumPy.
ROWS = [N, _checks._FEW_IDS // T + 1]


@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("bad_id", [V, V + 100, -1, -2, np.iinfo(np.int64).min])
def test_embedding_rejects_ids_out_of_range(bad_id, rows):
    xs = _ids(rows, T)
    xs[1, 2] = bad_id
    with pytest.raises(ValueError, match=rf"xs holds token id {bad_id}, outside \[0, {V}\)"):
        _embedding().forward(xs)


@pytest.mark.parametrize("rows", ROWS)
def test_embedding_rejects_huge_unsigned_ids(rows):
    xs = _ids(rows, T).astype(np.uint64)
    xs[0, 0] = np.iinfo(np.uint64).max  # would wrap to -1 if cast to int64 first
    with pytest.raises(ValueError, match=r"xs holds token id"):
        _embedding().forward(xs)


@pytest.mark.parametrize("xs", [_ids(N, T).astype(F64), _ids(N, T).astype(F32),
                                _ids(N, T).astype(bool)], ids=["float64", "float32", "bool"])
def test_embedding_rejects_non_integer_ids(xs):
    with pytest.raises(TypeError, match=r"xs must hold integer token ids.*xs\.astype"):
        _embedding().forward(xs)


@pytest.mark.parametrize("shape", [(N,), (N, T, 1), ()], ids=["1d", "3d", "0d"])
def test_embedding_rejects_wrong_ndim(shape):
    with pytest.raises(ValueError, match=r"xs must have shape \(any, any\)"):
        _embedding().forward(np.zeros(shape, np.int64))


@pytest.mark.parametrize("shape", [(0, T), (N, 0)], ids=["N0", "T0"])
def test_embedding_rejects_empty_batches(shape):
    with pytest.raises(ValueError, match=r"xs is empty"):
        _embedding().forward(np.zeros(shape, np.int64))


INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_ids_of_every_integer_dtype_are_accepted(dtype):
    """Any integer dtype works as ids and labels, with the results of int64 ids."""
    xs, ts = _ids(N, T), _ids(N, T)
    if np.dtype(dtype).kind == "i":
        ts[0, 0] = -1  # ignore_label, where the dtype can hold it
    embedding, lstm = _embedding(), _lstm()
    np.testing.assert_array_equal(embedding.forward(xs.astype(dtype)), embedding.forward(xs))
    np.testing.assert_array_equal(lstm.forward(xs.astype(dtype), embed=embedding),
                                  lstm.forward(xs, embed=embedding))
    scores = _floats(N, T, V)
    softmax = fast.TimeSoftmaxWithLoss()
    assert softmax.forward(scores, ts.astype(dtype)) == softmax.forward(scores, ts)


def test_ragged_ids_are_rejected():
    with pytest.raises(ValueError, match=r"xs must be a rectangular array of token ids of "
                                         r"shape \(any, any\)"):
        _embedding().forward([[1, 2], [3]])


@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("bad_label", [V, -2, -100])
def test_softmax_rejects_labels_out_of_range(bad_label, rows):
    ts = _ids(rows, T)
    ts[0, 0] = -1  # ignore_label: accepted
    ts[2, 3] = bad_label
    with pytest.raises(ValueError, match=rf"ts holds token id {bad_label}, outside \[0, {V}\) "
                                         r"or -1 \(ignore_label\)"):
        fast.TimeSoftmaxWithLoss().forward(_floats(rows, T, V), ts)


@pytest.mark.parametrize("ts", [_ids(N, T).astype(F64), _ids(N, T).astype(bool)],
                         ids=["float", "bool"])
def test_softmax_rejects_non_integer_labels(ts):
    with pytest.raises(TypeError, match=r"ts must hold integer token ids"):
        fast.TimeSoftmaxWithLoss().forward(_floats(N, T, V), ts)


@pytest.mark.parametrize("shape", [(N, T + 1), (N + 1, T), (N * T,), (N, T, V + 1)],
                         ids=["T", "N", "flat", "one_hot_V"])
def test_softmax_rejects_labels_of_the_wrong_shape(shape):
    with pytest.raises(ValueError, match=r"ts must have shape|one-hot ts must have the shape"):
        fast.TimeSoftmaxWithLoss().forward(_floats(N, T, V), np.zeros(shape, np.int64))


def _one_hot(dtype=F32):
    return np.eye(V, dtype=dtype)[_ids(N, T)]


@pytest.mark.parametrize("case", ["all_zero_row", "two_ones", "soft", "nan", "minus_one"])
def test_softmax_rejects_one_hot_targets_that_are_not_one_hot(case):
    """The book takes the argmax of any (N,T,V) ts; a row that is not one-hot would silently
    train on a label nobody chose."""
    ts = _one_hot()
    if case == "all_zero_row":
        ts[1, 2] = 0
    elif case == "two_ones":
        ts[1, 2, :2] = 1
    elif case == "soft":
        ts = np.full((N, T, V), 1 / V, F32)
    elif case == "nan":
        ts[0, 0, 0] = np.nan
    else:
        ts[0, 0] = -1
    with pytest.raises(ValueError, match=r"one-hot ts must hold a single 1 per \(n, t\) and 0 "
                                         r"elsewhere.*ts\.argmax\(axis=2\)"):
        fast.TimeSoftmaxWithLoss().forward(_floats(N, T, V), ts)


@pytest.mark.parametrize("dtype", [np.str_, object, "M8[s]"], ids=["str", "object", "datetime"])
def test_softmax_rejects_one_hot_targets_that_are_not_numbers(dtype):
    with pytest.raises(TypeError, match=r"one-hot ts must hold numbers, got dtype"):
        fast.TimeSoftmaxWithLoss().forward(_floats(N, T, V), _one_hot(np.int64).astype(dtype))


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.int64, F32, F64])
def test_softmax_one_hot_targets_of_any_number_dtype_equal_labels(dtype):
    xs, labels = _floats(N, T, V), _ids(N, T)
    softmax = fast.TimeSoftmaxWithLoss()
    assert softmax.forward(xs, np.eye(V, dtype=dtype)[labels]) == softmax.forward(xs, labels)


def test_softmax_rejects_all_labels_ignored():
    with pytest.raises(ValueError, match=r"every target in ts equals ignore_label"):
        fast.TimeSoftmaxWithLoss().forward(_floats(N, T, V), np.full((N, T), -1))


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_softmax_rejects_non_finite_scores(value, dtype):
    xs = _floats(N, T, V, dtype=dtype)
    xs[1, 2, 3] = value
    with pytest.raises(ValueError, match=r"xs \(scores\) holds NaN or inf"):
        fast.TimeSoftmaxWithLoss().forward(xs, _ids(N, T))


@pytest.mark.parametrize("xs", [np.zeros((N, T, V), np.int64), np.zeros((N, T, V), np.float16),
                                np.zeros((N, T)), [[[0.0, 1.0]]]],
                         ids=["int", "float16", "2d", "list"])
def test_softmax_rejects_bad_scores(xs):
    with pytest.raises((TypeError, ValueError), match=r"xs must"):
        fast.TimeSoftmaxWithLoss().forward(xs, np.zeros((N, T), np.int64))


@pytest.mark.parametrize("shape", [(0, T, V), (N, 0, V), (N, T, 0)], ids=["N0", "T0", "V0"])
def test_softmax_rejects_empty_scores(shape):
    with pytest.raises(ValueError, match=r"xs is empty"):
        fast.TimeSoftmaxWithLoss().forward(np.zeros(shape, F32), np.zeros(shape[:2], np.int64))


@pytest.mark.parametrize("dout", [np.ones(2), np.ones((N, T)), "1"], ids=["vector", "matrix", "str"])
def test_softmax_backward_rejects_a_non_scalar_dout(dout):
    layer = fast.TimeSoftmaxWithLoss()
    layer.forward(_floats(N, T, V), _ids(N, T))
    with pytest.raises((TypeError, ValueError), match=r"dout"):
        layer.backward(dout)


# ------------------------------------------------------------------- float inputs

def _float_calls():
    """(name, make layer, call(layer, x) with the bad x in the named argument, good shape)."""
    return {
        "lstm_xs": (_lstm, lambda l, x: l.forward(x), (N, T, D), "xs"),
        "affine_x": (_affine, lambda l, x: l.forward(x), (N, T, D), "x"),
        "attention_hs_enc": (fast.TimeAttention,
                             lambda l, x: l.forward(x, _floats(N, T, H, dtype=F32)), (N, T, H),
                             "hs_enc"),
        "attention_hs_dec": (fast.TimeAttention,
                             lambda l, x: l.forward(_floats(N, T, H, dtype=F32), x), (N, T, H),
                             "hs_dec"),
    }


@pytest.mark.parametrize("case", ["lstm_xs", "affine_x", "attention_hs_dec"])
def test_float64_input_into_float32_layer_names_the_fix(case):
    """(TimeAttention has no weights: hs_enc sets the dtype, so hs_dec is the one blamed.)"""
    make, call, shape, name = _float_calls()[case]
    with pytest.raises(TypeError, match=rf"{name} has dtype float64.*{name}\.astype\(np\.float32\)"):
        call(make(), np.zeros(shape, F64))


@pytest.mark.parametrize("case", ["lstm_xs", "affine_x"])
def test_float32_input_into_float64_layer_names_the_fix(case):
    make, call, shape, name = _float_calls()[case]
    with pytest.raises(TypeError, match=rf"{name} has dtype float32.*{name}\.astype\(np\.float64\)"):
        call(make(F64), np.zeros(shape, F32))


@pytest.mark.parametrize("case", list(_float_calls()))
@pytest.mark.parametrize("bad", ["int", "list", "2d", "4d", "width", "N0", "T0"])
def test_float_inputs_reject_bad_type_shape_and_empty(case, bad):
    make, call, shape, name = _float_calls()[case]
    n, t, d = shape
    x, error, words = {
        "int": (np.zeros(shape, np.int64), TypeError, "must be a float32 or float64"),
        "list": (np.zeros(shape).tolist(), TypeError, "must be a float32 or float64"),
        "2d": (np.zeros((n, t), F32), ValueError, "must have shape"),
        "4d": (np.zeros(shape + (1,), F32), ValueError, "must have shape"),
        "width": (np.zeros((n, t, d + 1), F32), ValueError, "must have shape"),
        "N0": (np.zeros((0, t, d), F32), ValueError, "is empty"),
        "T0": (np.zeros((n, 0, d), F32), ValueError, "is empty"),
    }[bad]
    if bad == "N0" and name == "hs_dec":  # hs_dec's batch must equal hs_enc's
        words = "must have shape"
    if bad == "width" and name == "hs_enc":  # hs_enc sets H; the mismatch shows in hs_dec
        name = "hs_dec"
    with pytest.raises(error, match=rf"{name} {words}"):
        call(make(), x)


def test_attention_rejects_mismatched_batch_and_width():
    layer = fast.TimeAttention()
    with pytest.raises(ValueError, match=r"hs_dec must have shape \(3, any, 6\)"):
        layer.forward(_floats(N, 5, H), _floats(N + 1, 2, H))
    with pytest.raises(ValueError, match=r"hs_dec must have shape \(3, any, 6\)"):
        layer.forward(_floats(N, 5, H), _floats(N, 2, H + 1))


@pytest.mark.parametrize("which", ["lstm", "affine", "embedding", "attention"])
def test_backward_rejects_dout_of_wrong_shape_or_dtype(which):
    if which == "lstm":
        layer, name, shape = _lstm(), "dhs", (N, T, H)
        layer.forward(_floats(N, T, D))
    elif which == "affine":
        layer, name, shape = _affine(), "dout", (N, T, M)
        layer.forward(_floats(N, T, D))
    elif which == "embedding":
        layer, name, shape = _embedding(), "dout", (N, T, D)
        layer.forward(_ids(N, T))
    else:
        layer, name, shape = fast.TimeAttention(), "dout", (N, T, H)
        layer.forward(_floats(N, 5, H), _floats(N, T, H))
    n, t, d = shape
    for wrong in [(n, t, d + 1), (n, t + 1, d), (n + 1, t, d), (n, t)]:
        with pytest.raises(ValueError, match=rf"{name} must have shape"):
            layer.backward(np.zeros(wrong, F32))
    with pytest.raises(TypeError, match=rf"{name} has dtype float64.*{name}\.astype"):
        layer.backward(np.zeros(shape, F64))


@pytest.mark.parametrize("make", [_lstm, _affine, _embedding, fast.TimeSoftmaxWithLoss,
                                  fast.TimeAttention],
                         ids=["lstm", "affine", "embedding", "softmax", "attention"])
def test_backward_before_forward(make):
    layer = make()
    with pytest.raises(ValueError, match=r"backward\(\) was called before forward\(\)"):
        layer.backward(np.zeros((N, T, H), F32))


def test_rejected_forward_leaves_the_layer_as_it_was():
    layer = _lstm(stateful=True)
    xs = _floats(N, T, D)
    hs = layer.forward(xs)
    h, c = layer.h.copy(), layer.c.copy()
    with pytest.raises(TypeError, match="xs has dtype"):
        layer.forward(xs.astype(F64))
    np.testing.assert_array_equal(layer.h, h)
    np.testing.assert_array_equal(layer.c, c)
    assert layer.backward(np.ones_like(hs)).shape == xs.shape  # still the good forward's cache


# ------------------------------------------------------------------- LSTM state

def test_set_state_rejects_wrong_hidden_width():
    layer = _lstm(stateful=True)
    with pytest.raises(ValueError, match=rf"h must have shape \(any, {H}\)"):
        layer.set_state(_floats(N, H + 1))
    with pytest.raises(ValueError, match=r"h must have shape"):
        layer.set_state(_floats(H))
    with pytest.raises(ValueError, match=rf"c must have shape \({N}, {H}\)"):
        layer.set_state(_floats(N, H), _floats(N, H + 1))
    with pytest.raises(ValueError, match=rf"c must have shape \({N}, {H}\)"):
        layer.set_state(_floats(N, H), _floats(N + 1, H))


def test_set_state_rejects_wrong_dtype():
    layer = _lstm(stateful=True)
    with pytest.raises(TypeError, match=r"h has dtype float64.*h\.astype\(np\.float32\)"):
        layer.set_state(_floats(N, H, dtype=F64))
    with pytest.raises(TypeError, match=r"c has dtype float64.*c\.astype\(np\.float32\)"):
        layer.set_state(_floats(N, H), _floats(N, H, dtype=F64))
    with pytest.raises(TypeError, match=r"h must be a float32 or float64"):
        layer.set_state(np.zeros((N, H), np.int64))


def test_stateful_batch_size_mismatch_at_next_forward():
    layer = _lstm(stateful=True)
    layer.set_state(_floats(N + 1, H))
    with pytest.raises(ValueError, match=rf"xs has batch size {N} but the stateful LSTM holds a "
                                         rf"state for {N + 1} rows.*reset_state\(\)"):
        layer.forward(_floats(N, T, D))
    layer.reset_state()
    layer.forward(_floats(N, T, D))  # carry-over from that forward, then another batch size
    with pytest.raises(ValueError, match=r"xs has batch size 1 .*state for 3 rows"):
        layer.forward(_floats(1, T, D))


@pytest.mark.parametrize("attr,value,error,match", [
    ("h", np.zeros((N, H + 1), F32), ValueError,
     rf"h must have shape \(any, {H}\), got \({N}, {H + 1}\)"),
    ("h", np.zeros((N, H), F64), TypeError, r"h has dtype float64, expected float32"),
    ("h", np.zeros((N, H)).tolist(), TypeError, r"h must be a float32 or float64 NumPy array"),
    ("h", np.zeros((N + 1, H), F32), ValueError,
     rf"xs has batch size {N} but the stateful LSTM holds a state for {N + 1} rows"),
    ("c", np.zeros((N - 1, H), F32), ValueError, rf"c must have shape \({N}, {H}\), got"),
    ("c", np.zeros((N, H), F64), TypeError, r"c has dtype float64, expected float32"),
], ids=["h_width", "h_dtype", "h_list", "h_batch", "c_batch", "c_dtype"])
def test_state_attributes_set_directly_are_checked_at_forward(attr, value, error, match):
    """h and c are public attributes, so a stateful forward checks them like set_state does:
    the kernel would otherwise read a state of the wrong size or dtype."""
    layer = _lstm(stateful=True)
    layer.forward(_floats(N, T, D))
    setattr(layer, attr, value)
    with pytest.raises(error, match=match):
        layer.forward(_floats(N, T, D))


def test_state_attributes_in_any_layout_work():
    layer, twin = _lstm(stateful=True), _lstm(stateful=True)
    h, c = _floats(N, H), _floats(N, H)
    layer.h, layer.c = np.asfortranarray(h), np.repeat(c, 2, axis=1)[:, ::2]  # F order, strided
    twin.set_state(h, c)
    xs = _floats(N, T, D)
    np.testing.assert_array_equal(layer.forward(xs), twin.forward(xs))


# ------------------------------------------------------------------- weights

@pytest.mark.parametrize("make,bad_name", [
    (lambda: fast.TimeLSTM(np.zeros((D, 4 * H), F32), np.zeros((H, 4 * H), F64),
                           np.zeros(4 * H, F32)), "Wh"),
    (lambda: fast.TimeLSTM(np.zeros((D, 4 * H), F64), np.zeros((H, 4 * H), F64),
                           np.zeros(4 * H, F32)), "b"),
    (lambda: fast.TimeAffine(np.zeros((D, M), F32), np.zeros(M, F64)), "b"),
], ids=["lstm_Wh", "lstm_b", "affine_b"])
def test_weights_of_mixed_dtypes(make, bad_name):
    with pytest.raises(TypeError, match=rf"weight {bad_name} is float64 but .* is float32|"
                                        rf"weight {bad_name} is float32 but .* is float64"):
        make()


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float16, bool])
def test_weights_of_non_float_dtype(dtype):
    with pytest.raises(TypeError, match=r"weight W must be a float32 or float64"):
        fast.TimeEmbedding(np.zeros((V, D), dtype))
    with pytest.raises(TypeError, match=r"weight Wx must be a float32 or float64"):
        fast.TimeLSTM(np.zeros((D, 4 * H), dtype), np.zeros((H, 4 * H), dtype),
                      np.zeros(4 * H, dtype))
    with pytest.raises(TypeError, match=r"weight W must be a float32 or float64"):
        fast.TimeAffine(np.zeros((D, M), dtype), np.zeros(M, dtype))


def test_weights_that_are_not_arrays():
    with pytest.raises(TypeError, match=r"weight W must be a float32 or float64 NumPy array"):
        fast.TimeEmbedding(np.zeros((V, D)).tolist())


@pytest.mark.parametrize("layout", ["fortran", "strided"])
def test_non_contiguous_weights(layout):
    def bad(shape):
        if layout == "fortran":
            return np.asfortranarray(np.ones(shape, F32))
        return np.ones(shape[:-1] + (2 * shape[-1],), F32)[..., ::2]

    with pytest.raises(ValueError, match=r"weight Wx must be C-contiguous.*ascontiguousarray"):
        fast.TimeLSTM(bad((D, 4 * H)), np.ones((H, 4 * H), F32), np.ones(4 * H, F32))
    with pytest.raises(ValueError, match=r"weight Wh must be C-contiguous"):
        fast.TimeLSTM(np.ones((D, 4 * H), F32), bad((H, 4 * H)), np.ones(4 * H, F32))
    with pytest.raises(ValueError, match=r"weight W must be C-contiguous"):
        fast.TimeEmbedding(bad((V, D)))
    with pytest.raises(ValueError, match=r"weight W must be C-contiguous"):
        fast.TimeAffine(bad((D, M)), np.ones(M, F32))
    with pytest.raises(ValueError, match=r"weight b must be C-contiguous"):
        fast.TimeAffine(np.ones((D, M), F32), np.ones(2 * M, F32)[::2])


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_weights(value):
    Wh = np.ones((H, 4 * H), F32)
    Wh[0, 1] = value
    with pytest.raises(ValueError, match=r"weight Wh holds NaN or inf"):
        fast.TimeLSTM(np.ones((D, 4 * H), F32), Wh, np.ones(4 * H, F32))


@pytest.mark.parametrize("shapes", [
    ((D, 4 * H), (H, 4 * H + 1), (4 * H,)),
    ((D, 4 * H), (H, 4 * H), (4 * H + 1,)),
    ((D, 4 * H + 4), (H, 4 * H), (4 * H,)),
    ((D, 4 * H), (H + 1, 4 * H), (4 * H,)),
    ((D, 4 * H), (4 * H,), (4 * H,)),
], ids=["Wh_cols", "b", "Wx_cols", "Wh_rows", "Wh_1d"])
def test_lstm_weights_of_inconsistent_shapes(shapes):
    with pytest.raises(ValueError, match=r"TimeLSTM needs Wx \(D, 4H\), Wh \(H, 4H\), b \(4H,\)"):
        fast.TimeLSTM(*[np.zeros(s, F32) for s in shapes])


@pytest.mark.parametrize("shapes", [((D, M), (M + 1,)), ((D,), (D,)), ((D, M), (1, M))])
def test_affine_weights_of_inconsistent_shapes(shapes):
    with pytest.raises(ValueError, match=r"TimeAffine needs W \(D, M\) and b \(M,\)"):
        fast.TimeAffine(*[np.zeros(s, F32) for s in shapes])


@pytest.mark.parametrize("shape", [(V,), (V, D, 2), ()], ids=["1d", "3d", "0d"])
def test_embedding_weight_of_wrong_ndim(shape):
    """W must be (V, D). A 1-D or 3-D W must be rejected with a message naming W (at
    construction, or at the latest at the first forward), not fail inside the kernel."""
    try:
        layer = fast.TimeEmbedding(np.zeros(shape, F32))
    except (TypeError, ValueError) as error:
        assert "W" in str(error)
        return
    with pytest.raises((TypeError, ValueError), match=r"\bW\b"):
        layer.forward(np.zeros((N, T), np.int64))


def test_read_only_weights_work_or_are_rejected_at_construction():
    """Weights the layer never writes (e.g. loaded with np.load(mmap_mode='r') for inference):
    either the constructor rejects them naming the weight, or forward works. A forward that
    fails claiming the caller replaced params[0] gives the wrong fix."""
    W = np.ones((V, D), F32)
    W.flags.writeable = False
    try:
        layer = fast.TimeEmbedding(W)
    except (TypeError, ValueError) as error:
        assert "W" in str(error)
        return
    out = layer.forward(np.zeros((N, T), np.int64))
    np.testing.assert_array_equal(out, 1)


# ------------------------------------------------------------------- params replaced

@pytest.mark.parametrize("what", ["shape", "dtype", "fortran", "grad_shape"])
@pytest.mark.parametrize("which", ["lstm", "affine", "embedding"])
def test_param_replaced_by_another_array_raises(which, what):
    """The lists must be updated in place; a rebound entry of another shape/dtype/layout must
    raise (before forward, and before a backward after a good forward), never crash."""
    def setup():
        if which == "lstm":
            layer = _lstm()
            return layer, lambda: layer.forward(_floats(N, T, D)), np.ones((N, T, H), F32)
        if which == "affine":
            layer = _affine()
            return layer, lambda: layer.forward(_floats(N, T, D)), np.ones((N, T, M), F32)
        layer = _embedding()
        return layer, lambda: layer.forward(_ids(N, T)), np.ones((N, T, D), F32)

    def replace(layer):
        p = layer.params[0]
        if what == "shape":
            layer.params[0] = np.zeros((p.shape[0] + 1,) + p.shape[1:], p.dtype)
        elif what == "dtype":
            layer.params[0] = p.astype(F64)
        elif what == "fortran":
            layer.params[0] = np.asfortranarray(np.ones(p.shape[:1] + (2,) + p.shape[1:],
                                                        p.dtype)[:, 0])
        else:
            layer.grads[0] = np.zeros((p.shape[0] + 1,) + p.shape[1:], p.dtype)

    kind = "grads" if what == "grad_shape" else "params"
    layer, forward, dout = setup()
    replace(layer)
    with pytest.raises(ValueError, match=rf"{kind}\[0\] is no longer.*in place"):
        forward()
    layer, forward, dout = setup()
    forward()
    replace(layer)
    with pytest.raises(ValueError, match=rf"{kind}\[0\] is no longer.*in place"):
        layer.backward(dout)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("which", ["lstm", "affine", "embedding"])
def test_all_params_and_grads_replaced_by_the_other_dtype_raises(which, dtype):
    """Rebinding every params[i] and grads[i] to a copy in the other dtype (an attempted
    'model.to(float64)') must raise: the kernels would otherwise hand float64 buffers to
    sgemm (garbage) or float32 buffers to dgemm (reads past their end)."""
    other = F64 if dtype == F32 else F32
    if which == "lstm":
        layer, args = _lstm(dtype), (_floats(N, T, D, dtype=dtype),)
    elif which == "affine":
        layer, args = _affine(dtype), (_floats(N, T, D, dtype=dtype),)
    else:
        layer, args = _embedding(dtype), (_ids(N, T),)
    for i in range(len(layer.params)):
        layer.params[i] = layer.params[i].astype(other)
        layer.grads[i] = layer.grads[i].astype(other)
    with pytest.raises(ValueError, match=r"params\[0\] is no longer.*in place"):
        layer.forward(*args)


# ------------------------------------------------------------------- threads

@pytest.mark.parametrize("n", [0, 99, "x", -1, 1.5, None, True])
def test_set_num_threads_rejects_bad_counts(n):
    before = fastseq.get_num_threads()
    with pytest.raises(ValueError, match=r"set_num_threads\(n\): n must be a whole number"):
        fastseq.set_num_threads(n)
    assert fastseq.get_num_threads() == before


@pytest.mark.parametrize("value,ok", [("1", True), ("0", False), ("x", False)])
def test_fastseq_num_threads_environment_variable(value, ok, run_python):
    code = "import fastseq; print(fastseq.get_num_threads())"
    result = run_python(code, env=dict(os.environ, FASTSEQ_NUM_THREADS=value))
    if ok:
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == value
    else:
        assert result.returncode != 0
        assert "ValueError: FASTSEQ_NUM_THREADS must be a whole number" in result.stderr


# ------------------------------------------------------------------- NUMBA_DISABLE_JIT

_WITHOUT_JIT = """
import numpy as np
import fastseq
from fastseq import reference
xs, ts = np.zeros((2, 7), np.int64), np.zeros((2, 5), np.int64)
print(reference.PeekySeq2seq(13, 4, 8).forward(xs, ts) > 0)  # the NumPy twin runs
try:
    fastseq.PeekySeq2seq(13, 4, 8).forward(xs, ts)
except fastseq.kernels.jit.JITDisabled as e:
    print(e)
"""


def test_kernels_say_they_need_the_jit(run_python):
    # With Numba's JIT off, kernels would fail deep inside (BLAS through pointers, views of
    # raw memory): the first kernel call says what is wrong instead.
    result = run_python(_WITHOUT_JIT, env=dict(os.environ, NUMBA_DISABLE_JIT="1"))
    assert result.returncode == 0, result.stderr
    works, error = result.stdout.strip().splitlines()
    assert works == "True"
    assert error.startswith("fastseq kernel ") and "cannot run with NUMBA_DISABLE_JIT=1" in error
    assert "unset NUMBA_DISABLE_JIT" in error
