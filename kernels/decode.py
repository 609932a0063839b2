"""Greedy decoding: the whole loop (embedding, LSTM step, attention, affine, argmax) compiled.

N batch, S output steps, V vocabulary, D embedding width, H hidden width, Ts encoder steps.
One kernel serves the book's three decoders; each passes its weights in this form:

    a_t    = E[id_{t-1}] + h_{t-1} @ Wh + lstm_bias        E = W_embed @ Wx_embed, (V,4H)
    h_t    = LSTM cell(a_t, c_{t-1})                        c_0 = 0, h_0 given
    score  = h_t @ W_out + out_bias (+ context_t @ W_ctx)  context_t = attention(hs_enc, h_t)
    id_t   = argmax(score) (the first maximum, as np.argmax)

    Seq2seq:   lstm_bias = b (1,4H);                 W_out = affine W; out_bias = affine b
    Peeky:     lstm_bias = h_enc @ Wx[:H] + b (N,4H); W_out = W[H:];   out_bias = h_enc @ W[:H] + b
    Attention: lstm_bias = b;  W_ctx = W[:H], W_out = W[H:], out_bias = b; hs_enc (N,Ts,H)
Without attention, hs_enc has Ts = 0. Rows are independent and split into n_chunks blocks.
"""

import numpy as np
from numba import prange

from .attention import attention_row_forward
from .blas import gemm
from .jit import chunk, kernel
from .lstm import lstm_cell_forward


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
        n = hi - lo
        if n == 0:
            continue
        h = h0[lo:hi].copy()
        cs = np.zeros((2, n, H), dtype)  # c_{t-1} and c_t, swapped every step
        tanh_c = np.empty((n, H), dtype)
        a = np.empty((n, 4 * H), dtype)
        score = np.empty((n, V), dtype)
        context = np.empty((n, H), dtype)
        last = np.full(n, start_id, np.int64)
        for s in range(S):
            for i in range(n):
                a[i] = E[last[i]]
            gemm(a, h, Wh, False, False, 1.0)
            c_prev, c = cs[s % 2], cs[(s + 1) % 2]
            for i in range(n):
                b = lstm_bias[lo + i if lstm_bias.shape[0] > 1 else 0]
                lstm_cell_forward(a[i], b, c_prev[i], c[i], tanh_c[i], h[i])
            gemm(score, h, W_out, False, False, 0.0)
            if with_attention:
                for i in range(n):
                    attention_row_forward(context[i:i + 1], weights_out[lo + i, s:s + 1],
                                          hs_enc[lo + i], h[i:i + 1])
                gemm(score, context, W_ctx, False, False, 1.0)
            for i in range(n):
                b = out_bias[lo + i if out_bias.shape[0] > 1 else 0]
                row = score[i]
                best, best_id = row[0] + b[0], 0
                for v in range(1, V):
                    x = row[v] + b[v]
                    if x > best:
                        best, best_id = x, v
                last[i] = best_id
                ids[lo + i, s] = best_id
