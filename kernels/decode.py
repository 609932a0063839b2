"""Inference: encoding and greedy decoding, each one compiled call over all time steps.

N batch, S output steps, V vocabulary, D embedding width, H hidden width, Ts encoder steps.
Nothing is saved for a backward pass, so rows are processed in blocks of ``BLOCK`` whose
working set (gate inputs, h, c) stays in cache for all steps; blocks are split across threads.
The embedding is folded into the LSTM: the input projection of token v is row v of
E = W_embed @ Wx (V,4H). One greedy kernel serves the book's three decoders:

    a_t    = E[id_{t-1}] + h_{t-1} @ Wh + lstm_bias         c_0 = 0, h_0 given
    h_t    = LSTM cell(a_t, c_{t-1})
    score  = h_t @ W_out + out_bias (+ context_t @ W_ctx)   context_t = attention(hs_enc, h_t)
    id_t   = argmax(score) (the first maximum, as np.argmax)

    Seq2seq:   lstm_bias = b (1,4H);                  W_out = affine W; out_bias = affine b
    Peeky:     lstm_bias = h_enc @ Wx[:H] + b (N,4H);  W_out = W[H:];   out_bias = h_enc @ W[:H] + b
    Attention: lstm_bias = b;  W_ctx = W[:H], W_out = W[H:], out_bias = b; hs_enc (N,Ts,H)
Without attention, hs_enc has Ts = 0.
"""

import numpy as np
from numba import prange

from .activations import softmax_row
from .blas import gemm
from .jit import chunk, helper, kernel
from .lstm import lstm_cell_forward

BLOCK = 128  # rows decoded together: measured best of 32-256 at H=128 and H=256


@helper
def _embedded_lstm_step(a, h, c_prev, c, tanh_c, ids, E, Wh, bias, first_row, h_is_zero):
    """One LSTM step of a block of R rows fed token ids (R,): a (R,4H) scratch; h (R,H) read
    (h_{t-1}) and overwritten (h_t); c_prev -> c (R,H); tanh_c (R,H) scratch; bias (1|N,4H)
    with the block's first row at first_row."""
    for i in range(a.shape[0]):
        a[i] = E[ids[i]]
    if not h_is_zero:
        gemm(a, h, Wh, False, False, 1.0)
    for i in range(a.shape[0]):
        b = bias[first_row + i if bias.shape[0] > 1 else 0]
        lstm_cell_forward(a[i], b, c_prev[i], c[i], tanh_c[i], h[i], 0, h.shape[1])


@kernel(parallel=True)
def lstm_encode(hs, ids, E, Wh, bias, n_chunks):
    """The LSTM over token ids from a zero state: hs (N,T_out,H) written with every step's h
    (T_out = T) or only the last one (T_out = 1); ids (N,T) int64; E (V,4H); Wh (H,4H);
    bias (1,4H)."""
    N, T = ids.shape
    H = Wh.shape[0]
    dtype = Wh.dtype
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, N)
        a = np.empty((BLOCK, 4 * H), dtype)
        h = np.empty((BLOCK, H), dtype)
        cs = np.empty((2, BLOCK, H), dtype)  # c_{t-1} and c_t, swapped every step
        tanh_c = np.empty((BLOCK, H), dtype)
        for r0 in range(lo, hi, BLOCK):
            R = min(BLOCK, hi - r0)
            h[:R] = 0.0
            cs[0, :R] = 0.0
            for t in range(T):
                _embedded_lstm_step(a[:R], h[:R], cs[t % 2, :R], cs[(t + 1) % 2, :R], tanh_c[:R],
                                    ids[r0:r0 + R, t], E, Wh, bias, r0, t == 0)
                if hs.shape[1] == T:
                    hs[r0:r0 + R, t] = h[:R]
            if hs.shape[1] == 1:
                hs[r0:r0 + R, 0] = h[:R]


@helper
def _attend(context, w, h_enc, h):
    """One row and step: w (Ts,) = softmax(h_enc (Ts,H) @ h (H,)), context (H,) = w @ h_enc."""
    Ts, H = h_enc.shape
    for s in range(Ts):
        e = h_enc[s]
        acc = h.dtype.type(0.0)
        for j in range(H):
            acc += e[j] * h[j]
        w[s] = acc
    softmax_row(w, w)
    context[:] = 0.0
    for s in range(Ts):
        e, ws = h_enc[s], w[s]
        for j in range(H):
            context[j] += ws * e[j]


@kernel(parallel=True)
def greedy_decode(ids, weights_out, start_id, h0, E, Wh, lstm_bias, W_out, out_bias, attention,
                  n_chunks):
    """ids (N,S) int64 and weights_out (N,S,Ts) (attention weights; Ts = 0 without attention)
    written; start_id: the first input id; h0 (N,H); E (V,4H); Wh (H,4H); lstm_bias (1|N,4H);
    W_out (H,V); out_bias (1|N,V); attention = (hs_enc (N,Ts,H), W_ctx (H,V))."""
    hs_enc, W_ctx = attention
    N, S = ids.shape
    H = Wh.shape[0]
    V = W_out.shape[1]
    with_attention = hs_enc.shape[1] > 0
    dtype = h0.dtype
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, N)
        a = np.empty((BLOCK, 4 * H), dtype)
        h = np.empty((BLOCK, H), dtype)
        cs = np.empty((2, BLOCK, H), dtype)
        tanh_c = np.empty((BLOCK, H), dtype)
        score = np.empty((BLOCK, V), dtype)
        context = np.empty((BLOCK, H), dtype)
        last = np.empty(BLOCK, np.int64)
        for r0 in range(lo, hi, BLOCK):
            R = min(BLOCK, hi - r0)
            h[:R] = h0[r0:r0 + R]
            cs[0, :R] = 0.0
            last[:R] = start_id
            for s in range(S):
                _embedded_lstm_step(a[:R], h[:R], cs[s % 2, :R], cs[(s + 1) % 2, :R],
                                    tanh_c[:R], last[:R], E, Wh, lstm_bias, r0, False)
                gemm(score[:R], h[:R], W_out, False, False, 0.0)
                if with_attention:
                    for i in range(R):
                        _attend(context[i], weights_out[r0 + i, s], hs_enc[r0 + i], h[i])
                    gemm(score[:R], context[:R], W_ctx, False, False, 1.0)
                for i in range(R):
                    b = out_bias[r0 + i if out_bias.shape[0] > 1 else 0]
                    row = score[i]
                    best, best_id = row[0] + b[0], 0
                    for v in range(1, V):
                        x = row[v] + b[v]
                        if x > best:
                            best, best_id = x, v
                    last[i] = best_id
                    ids[r0 + i, s] = best_id
