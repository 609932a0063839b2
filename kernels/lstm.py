"""LSTM over all time steps: one compiled call for the forward loop, one for the backward loop.

N batch, T time steps, D input width, H hidden width. The book's gate order: columns [0:H]
forget f, [H:2H] candidate g, [2H:3H] input i, [3H:4H] output o of

    A_t = x_t @ Wx + h_{t-1} @ Wh + b
    f, i, o = sigmoid(A_t[f, i, o]);  g = tanh(A_t[g])
    c_t = f * c_{t-1} + g * i;        h_t = o * tanh(c_t)

Work that does not depend on the recurrence leaves the time loop (cuDNN's layout): forward
runs xs @ Wx for all steps as one GEMM, then per step only A_t += h_{t-1} @ Wh and one fused
pass over the gates; backward runs per step only dh_{t-1} = dA_t @ Wh.T and one fused pass,
then dxs, dWx, dWh as one GEMM each. Arrays are batch-major like the book's and C-contiguous;
a step's rows (``hs[:, t]``) reach BLAS as a strided matrix, never as a copy.

Threads: batch rows are independent through time, so the time loops run on ``n_chunks`` blocks
of rows at once with no synchronisation per step; the weight gradients, which sum over all
rows, are split by output column instead. No partial sums are combined across chunks, so the
result does not depend on the number of chunks.

``saved`` (written by forward, read by backward, never modified by backward):
    gates   (N,T,4H)  activated f, g, i, o
    cs      (N,T+1,H) cs[:, 0] = c0, cs[:, t+1] = c_t
    tanh_cs (N,T,H)   tanh(c_t)
    h_prevs (N,T,H)   h_{t-1} of every step, h_prevs[:, 0] = h0 (so dWh is one GEMM)
"""

import numpy as np
from numba import prange

from .activations import sigmoid, tanh
from .blas import column_sums, gemm
from .jit import chunk, helper, kernel


@helper
def lstm_cell_forward(a, b, c_prev, c, tanh_c, h):
    """One step of one batch row. a (4H,) holds x @ Wx + h_prev @ Wh (no bias) and is overwritten
    with the activated gates f, g, i, o; b (4H,); c_prev (H,); c, tanh_c, h (H,) written."""
    # Unsigned indices into whole rows: signed offsets (a[H + j]) or per-gate slices cost
    # negative-index checks that stop LLVM from vectorising this loop.
    H = np.uint64(c.shape[0])
    for j in range(H):
        f = sigmoid(a[j] + b[j])
        g = tanh(a[H + j] + b[H + j])
        i = sigmoid(a[2 * H + j] + b[2 * H + j])
        o = sigmoid(a[3 * H + j] + b[3 * H + j])
        a[j], a[H + j], a[2 * H + j], a[3 * H + j] = f, g, i, o
        cj = f * c_prev[j] + g * i
        c[j] = cj
        tc = tanh(cj)
        tanh_c[j] = tc
        h[j] = o * tc


@helper
def lstm_cell_backward(da, a, c_prev, tanh_c, dh_out, dh_next, dc):
    """One backward step of one batch row. da (4H,) written: gradient w.r.t. the gate inputs;
    a (4H,) activated gates; c_prev, tanh_c (H,); dh_out (H,) upstream gradient of h_t;
    dh_next (H,) gradient of h_t from step t+1; dc (H,) gradient of c_t from step t+1, replaced
    by that of c_{t-1}."""
    one = a.dtype.type(1.0)
    H = np.uint64(tanh_c.shape[0])
    for j in range(H):
        f, g, i, o = a[j], a[H + j], a[2 * H + j], a[3 * H + j]
        tc = tanh_c[j]
        dh = dh_out[j] + dh_next[j]
        # h_t = o * tanh(c_t);  c_t = f * c_{t-1} + g * i
        dcj = dc[j] + dh * o * (one - tc * tc)
        # f = sigmoid(A_f) => dA_f = df * f * (1 - f); likewise i, o; g = tanh(A_g)
        da[j] = dcj * c_prev[j] * f * (one - f)
        da[H + j] = dcj * i * (one - g * g)
        da[2 * H + j] = dcj * g * i * (one - i)
        da[3 * H + j] = dh * tc * o * (one - o)
        dc[j] = dcj * f


@helper
def _forward_rows(hs, gates, cs, tanh_cs, h_prevs, Wh, bias, h0, c0, h0_is_zero):
    """The forward time loop for a block of rows; gates already hold the input projection."""
    N, T, H = hs.shape
    h_prevs[:, 0] = h0
    cs[:, 0] = c0
    for t in range(T):
        if t > 0 or not h0_is_zero:
            gemm(gates[:, t], h_prevs[:, t], Wh, False, False, 1.0)
        for n in range(N):
            b = bias[n if bias.shape[0] > 1 else 0]
            lstm_cell_forward(gates[n, t], b, cs[n, t], cs[n, t + 1], tanh_cs[n, t], hs[n, t])
            if t + 1 < T:
                h_prevs[n, t + 1] = hs[n, t]


@kernel(parallel=True)
def lstm_forward(hs, saved, xs, Wx, Wh, bias, h0, c0, h0_is_zero, n_chunks):
    """hs (N,T,H) out; saved see module doc; xs (N,T,D); Wx (D,4H); Wh (H,4H); bias (1,4H) the
    layer's b, or (N,4H) one bias per row (b plus an input that is constant over time);
    h0, c0 (N,H) initial state; h0_is_zero skips the first step's h0 @ Wh."""
    gates, cs, tanh_cs, h_prevs = saved
    N, T, D = xs.shape
    H = Wh.shape[0]
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, N)
        if lo < hi:
            # A_all = xs @ Wx for every step at once
            gemm(gates[lo:hi].reshape((hi - lo) * T, 4 * H), xs[lo:hi].reshape((hi - lo) * T, D),
                 Wx, False, False, 0.0)
            _forward_rows(hs[lo:hi], gates[lo:hi], cs[lo:hi], tanh_cs[lo:hi], h_prevs[lo:hi], Wh,
                          bias[lo:hi] if bias.shape[0] > 1 else bias, h0[lo:hi], c0[lo:hi],
                          h0_is_zero)


@kernel(parallel=True)
def lstm_forward_tokens(hs, saved, ids, E, Wh, bias, h0, c0, h0_is_zero, n_chunks):
    """lstm_forward for embedded token ids: the input of step t is W_embed[ids[:, t]], so its
    projection is row ids[n, t] of E (V,4H) = W_embed @ Wx, gathered instead of multiplied.
    ids (N,T) int64 in [0, V); other arguments as in lstm_forward."""
    gates, cs, tanh_cs, h_prevs = saved
    N, T = ids.shape
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, N)
        if lo < hi:
            for n in range(lo, hi):
                for t in range(T):
                    gates[n, t] = E[ids[n, t]]
            _forward_rows(hs[lo:hi], gates[lo:hi], cs[lo:hi], tanh_cs[lo:hi], h_prevs[lo:hi], Wh,
                          bias[lo:hi] if bias.shape[0] > 1 else bias, h0[lo:hi], c0[lo:hi],
                          h0_is_zero)


@helper
def _backward_rows(dA, dh0, dc, dhs, Wh_T, gates, cs, tanh_cs):
    """The backward time loop for a block of rows (arguments as in lstm_backward)."""
    N, T, H = dhs.shape
    dh_next = dh0  # dh_t arriving from step t+1; after step 0 it is dh0
    dh_next[:] = 0.0
    dc[:] = 0.0
    for t in range(T - 1, -1, -1):
        for n in range(N):
            lstm_cell_backward(dA[n, t], gates[n, t], cs[n, t], tanh_cs[n, t], dhs[n, t],
                               dh_next[n], dc[n])
        # A_t = ... + h_{t-1} @ Wh  =>  dh_{t-1} = dA_t @ Wh.T
        gemm(dh_next, dA[:, t], Wh_T, False, False, 0.0)


@helper
def transpose(out, x):
    """out (C,R) = x (R,C).T, in tiles that stay in cache."""
    R, C = x.shape
    for i0 in range(0, R, 32):
        for j0 in range(0, C, 32):
            for i in range(i0, min(i0 + 32, R)):
                for j in range(j0, min(j0 + 32, C)):
                    out[j, i] = x[i, j]


@kernel(parallel=True)
def lstm_backward(dxs, grads, dh0, work, dhs, xs, Wx, Wh, saved, n_chunks):
    """dxs (N,T,D), grads = (dWx (D,4H), dWh (H,4H), db (4H,)) and dh0 (N,H) (gradient w.r.t.
    h0) written; work = (dA (N,T,4H), dc (N,H), Wh_T (4H,H)) scratch; dhs (N,T,H) upstream
    gradient; xs (N,T,D), Wx (D,4H), Wh (H,4H), saved: as given to / written by lstm_forward."""
    gates, cs, tanh_cs, h_prevs = saved
    dWx, dWh, db = grads
    dA, dc, Wh_T = work
    N, T, D = xs.shape
    H = Wh.shape[0]
    transpose(Wh_T, Wh)  # rebuilt every call: the optimizer changes Wh between calls
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, N)
        if lo < hi:
            _backward_rows(dA[lo:hi], dh0[lo:hi], dc[lo:hi], dhs[lo:hi], Wh_T, gates[lo:hi],
                           cs[lo:hi], tanh_cs[lo:hi])
            # A_all = xs @ Wx + ...  =>  dxs = dA_all @ Wx.T
            gemm(dxs[lo:hi].reshape((hi - lo) * T, D), dA[lo:hi].reshape((hi - lo) * T, 4 * H),
                 Wx, False, True, 0.0)
    # A_all = xs @ Wx + h_prevs @ Wh + b, summed over all N*T rows: split by output column
    dA_all = dA.reshape(N * T, 4 * H)
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, 4 * H)
        if lo < hi:
            gemm(dWx[:, lo:hi], xs.reshape(N * T, D), dA_all[:, lo:hi], True, False, 0.0)
            gemm(dWh[:, lo:hi], h_prevs.reshape(N * T, H), dA_all[:, lo:hi], True, False, 0.0)
            column_sums(db[lo:hi], dA_all, lo)


@kernel(parallel=True)
def lstm_backward_tokens(dW_embed, grads, dh0, work, dhs, ids, W_embed, Wx, Wh, saved,
                         n_chunks):
    """lstm_backward for embedded token ids (see lstm_forward_tokens): dW_embed (V,D) written
    instead of dxs, and no GEMM of size N*T for the input weights. work = (dA, dc, Wh_T,
    dE (V,4H)); ids (N,T); W_embed (V,D); the rest as in lstm_backward."""
    gates, cs, tanh_cs, h_prevs = saved
    dWx, dWh, db = grads
    dA, dc, Wh_T, dE = work
    N, T = ids.shape
    H = Wh.shape[0]
    transpose(Wh_T, Wh)
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, N)
        if lo < hi:
            _backward_rows(dA[lo:hi], dh0[lo:hi], dc[lo:hi], dhs[lo:hi], Wh_T, gates[lo:hi],
                           cs[lo:hi], tanh_cs[lo:hi])
    # A[n, t] = W_embed[ids[n, t]] @ Wx + ...: dE[v] = sum of dA where ids == v, then
    # dWx = W_embed.T @ dE and dW_embed = dE @ Wx.T; split by output column
    dA_all = dA.reshape(N * T, 4 * H)
    ids_all = ids.reshape(N * T)
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, 4 * H)
        if lo < hi:
            dE[:, lo:hi] = 0.0
            for r in range(N * T):
                row, d = dE[ids_all[r], lo:hi], dA_all[r, lo:hi]
                for j in range(hi - lo):
                    row[j] += d[j]
            gemm(dWh[:, lo:hi], h_prevs.reshape(N * T, H), dA_all[:, lo:hi], True, False, 0.0)
            column_sums(db[lo:hi], dE, lo)
    gemm(dWx, W_embed, dE, True, False, 0.0)
    gemm(dW_embed, dE, Wx, False, True, 0.0)
