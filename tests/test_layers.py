"""Every fast layer against its plain NumPy twin (fastseq.reference.layers).

Shapes: N batch, T time steps (Ts encoder, Td decoder steps), D input width, H hidden width,
V vocabulary, M affine output width.

Each case builds one set of inputs, runs a scenario (forwards, backwards, state changes) with the
reference layer and with the fast layer under 1 and under 2 threads, and compares every output,
every gradient and every state attribute: fast vs reference with the tolerances of the dtype,
and 1 thread vs 2 threads to float rounding. Batch sizes 1, 3 and 5 put rows on both sides of
the 2-chunk split, including an empty chunk (N=1). The LSTM splits few rows by hidden units
instead (fastseq.kernels.lstm.split_by_units): its N37 case takes the split by rows.
"""
import numpy as np
import pytest

import fastseq.layers as fast
import fastseq.reference.layers as ref
from fastseq.kernels.lstm import split_by_units
from conftest import DTYPES, THREAD_COUNTS, assert_close, assert_threads_agree, tolerances


def _layout(x, layout):
    """x (N, T, ...) as the given memory layout, same values along the kept steps.

    'reversed' and 'strided' return views whose steps are a reordering / subset of x's, so the
    caller builds x with twice the steps for 'strided'.
    """
    if layout == "contiguous":
        return x
    if layout == "reversed":
        return x[:, ::-1]
    if layout == "strided":
        return x[:, ::2]
    if layout == "fortran":
        return np.asfortranarray(x)
    raise AssertionError(layout)


def _steps(T, layout):
    return 2 * T if layout == "strided" else T


def _compare_runs(run, dtype, set_threads):
    """Runs ``run(module)`` with the reference and with the fast layers at 1 and 2 threads and
    compares every named result."""
    want = run(ref)
    got = {}
    for n in THREAD_COUNTS:
        set_threads(n)
        got[n] = run(fast)
    for n in THREAD_COUNTS:
        assert got[n].keys() == want.keys()
        for name, value in want.items():
            if name == "loss":  # a Python/NumPy scalar; its dtype is not part of the contract
                rtol, atol = tolerances(dtype)
                assert np.ndim(got[n][name]) == 0
                np.testing.assert_allclose(float(got[n][name]), float(value), rtol=rtol,
                                           atol=atol, err_msg=f"{name} with {n} threads")
            else:
                assert_close(got[n][name], value, dtype, err_msg=f"{name} with {n} threads")
    for name in want:
        assert_threads_agree(got[1][name], got[2][name], dtype, err_msg=f"{name}: 1 vs 2 threads")
    return got


# --------------------------------------------------------------------------- TimeEmbedding

EMBEDDING_CASES = {
    # name: (N, T, V, D, ids, layout, id dtype)
    "base": (3, 4, 7, 5, "random", "contiguous", np.int64),
    "T1": (3, 1, 7, 5, "random", "contiguous", np.int64),
    "N1": (1, 4, 7, 5, "random", "contiguous", np.int64),
    "N5": (5, 3, 7, 5, "random", "contiguous", np.int64),
    "D1": (3, 4, 7, 1, "random", "contiguous", np.int64),
    "V1": (3, 4, 1, 5, "random", "contiguous", np.int64),
    "repeated_ids": (3, 4, 7, 5, "few", "contiguous", np.int64),
    "one_id_everywhere": (5, 4, 7, 5, "same", "contiguous", np.int64),
    "int32_ids": (3, 4, 7, 5, "random", "contiguous", np.int32),
    "reversed": (3, 4, 7, 5, "random", "reversed", np.int64),
    "strided": (3, 4, 7, 5, "random", "strided", np.int64),
    "fortran": (3, 4, 7, 5, "random", "fortran", np.int64),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(EMBEDDING_CASES))
def test_embedding(case, dtype, rng, thread_count):
    N, T, V, D, ids, layout, id_dtype = EMBEDDING_CASES[case]
    T_all = _steps(T, layout)
    high = {"random": V, "few": min(V, 2), "same": 1}[ids]
    xs = _layout(rng.integers(0, high, (N, T_all)).astype(id_dtype) + (3 if ids == "same" else 0),
                 layout)
    W = rng.standard_normal((V, D)).astype(dtype)
    dout = _layout(rng.standard_normal((N, T_all, D)).astype(dtype), layout)

    def run(M):
        layer = M.TimeEmbedding(W.copy())
        out = layer.forward(xs)
        assert layer.backward(dout) is None
        return {"out": out, "dW": layer.grads[0].copy()}

    _compare_runs(run, dtype, thread_count)


# --------------------------------------------------------------------------- TimeLSTM

LSTM_SHAPES = {"base": (3, 4, 5, 6), "T1": (3, 1, 5, 6), "N1": (1, 4, 5, 6), "N5": (5, 3, 4, 2),
               "H1": (3, 4, 5, 1), "D1": (3, 4, 1, 6), "D_lt_H": (3, 4, 2, 7), "N37": (37, 3, 4, 5)}
LSTM_SCENARIOS = ["plain", "carry", "set_h", "set_hc", "reset"]
LSTM_CASES = (
    [(shape, "contiguous", s) for shape in LSTM_SHAPES for s in ("plain", "carry")]
    + [("base", layout, s) for layout in ("reversed", "strided", "fortran")
       for s in ("plain", "carry")]
    + [(shape, "contiguous", s) for shape in ("base", "N1", "N5", "H1", "N37")
       for s in ("set_h", "set_hc", "reset")]
    + [("base", "reversed", "set_hc")]
)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,layout,scenario", LSTM_CASES,
                         ids=["-".join(c) for c in LSTM_CASES])
def test_lstm(shape, layout, scenario, dtype, rng, thread_count):
    """Two forward/backward rounds. plain: not stateful (each forward starts from zeros);
    carry: stateful, the second forward continues from the first's last h, c; set_h / set_hc:
    set_state(h0) / set_state(h0, c0) before the first forward; reset: stateful, reset_state()
    between the rounds."""
    N, T, D, H = LSTM_SHAPES[shape]
    T_all = _steps(T, layout)
    Wx = (rng.standard_normal((D, 4 * H)) / np.sqrt(D)).astype(dtype)
    Wh = (rng.standard_normal((H, 4 * H)) / np.sqrt(H)).astype(dtype)
    b = (0.5 * rng.standard_normal(4 * H)).astype(dtype)
    xs = [_layout(rng.standard_normal((N, T_all, D)).astype(dtype), layout) for _ in range(2)]
    dhs = [_layout(rng.standard_normal((N, T_all, H)).astype(dtype), layout) for _ in range(2)]
    h0 = rng.standard_normal((N, H)).astype(dtype)
    c0 = rng.standard_normal((N, H)).astype(dtype)

    def run(M):
        layer = M.TimeLSTM(Wx.copy(), Wh.copy(), b.copy(), stateful=scenario != "plain")
        if scenario == "set_h":
            layer.set_state(h0.copy())
        elif scenario == "set_hc":
            layer.set_state(h0.copy(), c0.copy())
        result = {}
        for k in range(2):
            if k == 1 and scenario == "reset":
                layer.reset_state()
                assert layer.h is None and layer.c is None
            result[f"hs{k}"] = layer.forward(xs[k])
            result[f"h{k}"] = np.array(layer.h)
            result[f"c{k}"] = np.array(layer.c)
            result[f"dxs{k}"] = layer.backward(dhs[k])
            result[f"dh{k}"] = np.array(layer.dh)
            for name, g in zip(("dWx", "dWh", "db"), layer.grads):
                result[f"{name}{k}"] = g.copy()
        return result

    assert split_by_units(N, 2) == (N < 37)  # both ways of splitting the time loops are run
    got = _compare_runs(run, dtype, thread_count)
    # the book's semantics, checked on the fast layer itself: h, c are the last step
    for result in got.values():
        np.testing.assert_array_equal(result["h1"], result["hs1"][:, -1])


# --------------------------------------------------------------------------- TimeAffine

AFFINE_CASES = {
    # name: (N, T, D, M, layout)
    "base": (3, 4, 5, 6, "contiguous"),
    "T1": (3, 1, 5, 6, "contiguous"),
    "N1": (1, 4, 5, 6, "contiguous"),
    "N5": (5, 3, 5, 6, "contiguous"),
    "D1": (3, 4, 1, 6, "contiguous"),
    "M1": (3, 4, 5, 1, "contiguous"),
    "N1T1": (1, 1, 5, 6, "contiguous"),
    "reversed": (3, 4, 5, 6, "reversed"),
    "strided": (3, 4, 5, 6, "strided"),
    "fortran": (3, 4, 5, 6, "fortran"),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(AFFINE_CASES))
def test_affine(case, dtype, rng, thread_count):
    N, T, D, M_, layout = AFFINE_CASES[case]
    T_all = _steps(T, layout)
    W = rng.standard_normal((D, M_)).astype(dtype)
    b = rng.standard_normal(M_).astype(dtype)
    x = _layout(rng.standard_normal((N, T_all, D)).astype(dtype), layout)
    dout = _layout(rng.standard_normal((N, T_all, M_)).astype(dtype), layout)

    def run(M):
        layer = M.TimeAffine(W.copy(), b.copy())
        result = {"out": layer.forward(x), "dx": layer.backward(dout)}
        result["dW"], result["db"] = (g.copy() for g in layer.grads)
        return result

    _compare_runs(run, dtype, thread_count)


# --------------------------------------------------------------------------- TimeSoftmaxWithLoss

SOFTMAX_CASES = {
    # name: (N, T, V, labels, layout, score scale, dout)
    "base": (3, 4, 7, "int", "contiguous", 1.0, 1),
    "T1": (3, 1, 7, "int", "contiguous", 1.0, 1),
    "N1": (1, 4, 7, "int", "contiguous", 1.0, 1),
    "N5": (5, 3, 7, "int", "contiguous", 1.0, 1),
    "V1": (3, 4, 1, "int", "contiguous", 1.0, 1),
    "int32_labels": (3, 4, 7, "int32", "contiguous", 1.0, 1),
    "ignored": (5, 4, 7, "ignored", "contiguous", 1.0, 1),
    "ignored_N1": (1, 4, 7, "ignored", "contiguous", 1.0, 1),
    "one_hot": (3, 4, 7, "one_hot", "contiguous", 1.0, 1),
    "one_hot_int": (5, 4, 7, "one_hot_int", "contiguous", 1.0, 1),
    "large_scores": (3, 4, 7, "int", "contiguous", 40.0, 1),
    "dout_scaled": (3, 4, 7, "ignored", "contiguous", 1.0, 0.37),
    "reversed": (3, 4, 7, "int", "reversed", 1.0, 1),
    "strided": (3, 4, 7, "ignored", "strided", 1.0, 1),
    "fortran": (3, 4, 7, "int", "fortran", 1.0, 1),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(SOFTMAX_CASES))
def test_softmax_with_loss(case, dtype, rng, thread_count):
    N, T, V, labels, layout, scale, dout = SOFTMAX_CASES[case]
    T_all = _steps(T, layout)
    xs = _layout((scale * rng.standard_normal((N, T_all, V))).astype(dtype), layout)
    ts = rng.integers(0, V, (N, T_all))
    if labels == "ignored":
        ts[rng.random((N, T_all)) < 0.4] = -1
        ts[0, 0] = 0  # at least one target counts
        if N > 1:
            ts[-1] = -1  # a whole sequence ignored
    if labels == "int32":
        ts = ts.astype(np.int32)
    if labels == "one_hot":
        ts = np.eye(V, dtype=dtype)[ts]
    if labels == "one_hot_int":
        ts = np.eye(V, dtype=np.int64)[ts]
    ts = _layout(ts, layout)

    def run(M):
        layer = M.TimeSoftmaxWithLoss()
        loss = layer.forward(xs, ts)
        return {"loss": loss, "dxs": layer.backward(dout)}

    got = _compare_runs(run, dtype, thread_count)
    if labels == "ignored":  # zero gradient where the target is ignored
        ignored = np.asarray(ts) == -1
        for result in got.values():
            assert (result["dxs"][ignored] == 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_with_loss_huge_finite_scores(dtype, thread_count):
    """Finite scores near the top of the float range: a stable log-softmax gives log 2 for two
    tied maxima (DESIGN: "the loss is never inf/NaN for finite scores")."""
    big = np.finfo(dtype).max / 1.5  # finite, but two of them overflow when added
    xs = np.array([[[big, big, 0.0], [0.0, big, big]]], dtype)  # (1, 2, 3)
    ts = np.array([[0, 2]])

    def run(M):
        layer = M.TimeSoftmaxWithLoss()
        loss = layer.forward(xs, ts)
        return {"loss": loss, "dxs": layer.backward()}

    got = _compare_runs(run, dtype, thread_count)
    assert got[1]["loss"] == pytest.approx(np.log(2))


# --------------------------------------------------------------------------- TimeAttention

ATTENTION_CASES = {
    # name: (N, Ts, Td, H, layout of hs_enc, layout of hs_dec)
    "base": (3, 5, 4, 6, "contiguous", "contiguous"),
    "Ts_lt_Td": (3, 2, 6, 4, "contiguous", "contiguous"),
    "Ts1": (3, 1, 4, 6, "contiguous", "contiguous"),
    "Td1": (3, 5, 1, 6, "contiguous", "contiguous"),
    "N1": (1, 5, 4, 6, "contiguous", "contiguous"),
    "N5": (5, 3, 4, 2, "contiguous", "contiguous"),
    "H1": (3, 5, 4, 1, "contiguous", "contiguous"),
    "reversed_enc": (3, 5, 4, 6, "reversed", "contiguous"),
    "strided_dec": (3, 5, 4, 6, "contiguous", "strided"),
    "fortran": (3, 5, 4, 6, "fortran", "fortran"),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(ATTENTION_CASES))
def test_attention(case, dtype, rng, thread_count):
    N, Ts, Td, H, enc_layout, dec_layout = ATTENTION_CASES[case]
    hs_enc = _layout(rng.standard_normal((N, _steps(Ts, enc_layout), H)).astype(dtype), enc_layout)
    hs_dec = _layout(rng.standard_normal((N, _steps(Td, dec_layout), H)).astype(dtype), dec_layout)
    dout = _layout(rng.standard_normal((N, _steps(Td, dec_layout), H)).astype(dtype), dec_layout)

    def run(M):
        layer = M.TimeAttention()
        contexts = layer.forward(hs_enc, hs_dec)
        weights = np.stack(layer.attention_weights, axis=1)  # (N, Td, Ts)
        dhs_enc, dhs_dec = layer.backward(dout)
        return {"contexts": contexts, "weights": weights, "dhs_enc": dhs_enc, "dhs_dec": dhs_dec}

    _compare_runs(run, dtype, thread_count)
