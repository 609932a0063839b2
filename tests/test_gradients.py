"""Backward of every fast layer checked by central finite differences at float64.

Shapes: N batch, T time steps (Ts encoder, Td decoder steps), D input width, H hidden width,
V vocabulary. Tiny shapes (N=2, T=3, D=4, H=5, V=7); loss = sum(out * dout) for a seeded
random dout, differentiated with respect to every parameter and every float input. Each test
runs with 1 and with 2 threads (the ``threads`` fixture).
"""
import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastseq.layers as fast
from conftest import FD_ATOL, FD_RTOL, finite_difference

N, T, D, H, V = 2, 3, 4, 5, 7
F64 = np.float64


def assert_grad(analytic, numeric, name):
    assert analytic.dtype == F64, name
    assert_allclose(analytic, numeric, rtol=FD_RTOL, atol=FD_ATOL, err_msg=name)


def test_embedding_gradient(rng, threads):
    W = rng.standard_normal((V, D))
    xs = rng.integers(0, V, (N, T))
    xs[0, :2] = 3  # a repeated id
    dout = rng.standard_normal((N, T, D))
    layer = fast.TimeEmbedding(W)

    def loss():
        return np.sum(layer.forward(xs) * dout)

    layer.forward(xs)
    layer.backward(dout)
    dW = layer.grads[0].copy()
    assert_grad(dW, finite_difference(loss, W), "dW")


@pytest.mark.parametrize("stateful", [False, True], ids=["zero_state", "set_state_h0_c0"])
def test_lstm_gradient(stateful, rng, threads):
    Wx = rng.standard_normal((D, 4 * H)) / np.sqrt(D)
    Wh = rng.standard_normal((H, 4 * H)) / np.sqrt(H)
    b = 0.5 * rng.standard_normal(4 * H)
    xs = rng.standard_normal((N, T, D))
    h0 = rng.standard_normal((N, H))
    c0 = rng.standard_normal((N, H))
    dhs = rng.standard_normal((N, T, H))
    layer = fast.TimeLSTM(Wx, Wh, b, stateful=stateful)

    def loss():
        if stateful:
            layer.set_state(h0, c0)
        return np.sum(layer.forward(xs) * dhs)

    loss()
    dxs = layer.backward(dhs)
    dWx, dWh, db = (g.copy() for g in layer.grads)
    dh = layer.dh.copy()
    assert_grad(dxs, finite_difference(loss, xs), "dxs")
    assert_grad(dWx, finite_difference(loss, Wx), "dWx")
    assert_grad(dWh, finite_difference(loss, Wh), "dWh")
    assert_grad(db, finite_difference(loss, b), "db")
    if stateful:
        assert_grad(dh, finite_difference(loss, h0), "dh (w.r.t. the initial h)")
    else:
        # starting from zeros, dh is still the gradient w.r.t. that zero h0: compare with a
        # stateful twin started from explicit zeros
        twin = fast.TimeLSTM(Wx, Wh, b, stateful=True)
        h_zero = np.zeros((N, H))

        def twin_loss():
            twin.set_state(h_zero, np.zeros((N, H)))
            return np.sum(twin.forward(xs) * dhs)

        assert_grad(dh, finite_difference(twin_loss, h_zero), "dh (w.r.t. the zero initial h)")


def test_affine_gradient(rng, threads):
    W = rng.standard_normal((D, H))
    b = rng.standard_normal(H)
    x = rng.standard_normal((N, T, D))
    dout = rng.standard_normal((N, T, H))
    layer = fast.TimeAffine(W, b)

    def loss():
        return np.sum(layer.forward(x) * dout)

    loss()
    dx = layer.backward(dout)
    dW, db = (g.copy() for g in layer.grads)
    assert_grad(dx, finite_difference(loss, x), "dx")
    assert_grad(dW, finite_difference(loss, W), "dW")
    assert_grad(db, finite_difference(loss, b), "db")


@pytest.mark.parametrize("labels", ["int", "ignored", "one_hot"])
def test_softmax_with_loss_gradient(labels, rng, threads):
    xs = 2 * rng.standard_normal((N, T, V))
    ts = rng.integers(0, V, (N, T))
    if labels == "ignored":
        ts[0, 1] = ts[1, 2] = -1
    if labels == "one_hot":
        ts = np.eye(V)[ts]
    dout = 0.7  # the loss is a scalar: sum(out * dout) = loss * dout
    layer = fast.TimeSoftmaxWithLoss()

    def loss():
        return layer.forward(xs, ts) * dout

    loss()
    dxs = layer.backward(dout)
    assert_grad(dxs, finite_difference(loss, xs), "dxs")


@pytest.mark.parametrize("Ts,Td", [(3, 3), (4, 2), (2, 4)])
def test_attention_gradient(Ts, Td, rng, threads):
    hs_enc = rng.standard_normal((N, Ts, H))
    hs_dec = rng.standard_normal((N, Td, H))
    dout = rng.standard_normal((N, Td, H))
    layer = fast.TimeAttention()

    def loss():
        return np.sum(layer.forward(hs_enc, hs_dec) * dout)

    loss()
    dhs_enc, dhs_dec = layer.backward(dout)
    assert_grad(dhs_enc, finite_difference(loss, hs_enc), "dhs_enc")
    assert_grad(dhs_dec, finite_difference(loss, hs_dec), "dhs_dec")
