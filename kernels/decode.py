"""Inference: greedy decoding, one compiled call from the question ids to the answer ids.

N batch, Ts question steps, S output steps, V vocabulary, D embedding width, H hidden width.
Nothing is saved for a backward pass, so rows are processed in blocks of ``BLOCK``: a block is
encoded and then decoded at once, its working set (gate inputs, h, c, the encoder's states)
staying in cache; blocks are split across threads. The embeddings are folded into the LSTMs:
the input projection of token v is row v of E = W_embed @ Wx (V,4H), computed once per call
(or, when a call has fewer tokens than V, W_embed[v] @ Wx for each token). One greedy loop
serves the book's three decoders:

    a_t    = E[id_{t-1}] + h_{t-1} @ Wh + bias         c_0 = 0, h_0 = the encoder's last h
    h_t    = LSTM cell(a_t, c_{t-1})
    score  = h_t @ W_out + out_bias (+ context_t @ W_side)   context_t = attention(hs_enc, h_t)
    id_t   = argmax(score) (the first maximum, as np.argmax)

    Seq2seq:   bias = b;                    out_bias = b_out
    Peeky:     bias = h_0 @ Wx_peek + b;    out_bias = h_0 @ W_side + b_out   (once per row)
    Attention: bias = b;                    out_bias = b_out;  W_side multiplies context_t

A row's first encoder steps depend only on its first tokens. With many rows and a small
vocabulary, the states after the first p steps are computed once for each of the V**p token
prefixes, with the h @ Wh of step p, and rows gather them (``_prefix_tables``): p is the most
steps with 4 * V**p <= N. Decoding the addition task's 5,000 test questions (V = 13, p = 2) then
runs two of the encoder's six products of h @ Wh on 13 and 169 rows instead of 5,000 each:
PeekySeq2seq 132-144 -> 107-112 ms, Seq2seq 124-130 -> 100-101 ms on one thread (alternating
runs, best of 10).

A whole call is one dispatch, which is most of what decoding a single question costs beyond
its arithmetic, and a thread's scratch is sized to its rows (up to BLOCK), not to a full block.
Measured, one question of PeekySeq2seq (H=128): 162 us as five compiled calls (encode, two
projections of h, decode) with two embedding folds between them, 127 us as one call (medians
of alternating runs); the call alone 67 us with full-block scratch, 57 us with scratch for its
one row (best of 30 runs of 300).
"""

import numpy as np
from numba import prange

from .activations import fma, softmax_row
from .blas import DOT_LANES, dot, gemm, packed_product
from .jit import chunk, helper, kernel
from .lstm import lstm_cell_forward
from .tiles import pack
from .views import assign

BLOCK = 128  # rows decoded together: measured best of 32-256 at H=128 and H=256
# From this many rows on, a call packs the recurrent weights once (``tiles.pack``) for the
# steps' products; below (one question: 10 products), packing would cost more than it saves.
# Measured in one process, alternating with reading them where they lie (2 threads, ms, median
# of 15, the same ids): 5,000 questions Seq2seq 43.2 against 48.1, PeekySeq2seq 47.7 against
# 53.4; 1,000 of AttentionSeq2seq 155 against 175.
PACK_ROWS = 64


@helper
def _fold(W_embed, Wx, tokens):
    """E = W_embed @ Wx (V,4H) when the call projects at least V tokens; else an empty E, and
    each token is projected alone (one question: 7 tokens against a vocabulary of 13)."""
    V = W_embed.shape[0] if tokens >= W_embed.shape[0] else 0
    E = np.empty((V, Wx.shape[1]), Wx.dtype)
    if V > 0:
        gemm(E, W_embed, Wx, False, False, 0.0)
    return E


@helper
def _embedded_lstm_step(a, h, c_prev, c, tanh_c, ids, embedding, weights, bias, h_is_zero,
                        products):
    """One LSTM step of a block of R rows fed token ids (R,): a (R,4H) scratch; h (R,H) read
    (h_{t-1}) and overwritten (h_t); c_prev -> c (R,H); tanh_c (R,H) scratch;
    embedding = (E, W_embed, Wx) with E from _fold; weights = (Wh, Wh packed by
    tiles.pack, or empty: then Wh is read where it lies);
    bias (R|1,4H); products = (G, rows): when rows (R,) is not empty, h_{t-1} @ Wh of row i is
    G[rows[i]], gathered, not multiplied."""
    E, W_embed, Wx = embedding
    Wh, packed = weights
    G, rows = products
    for i in range(a.shape[0]):
        if E.shape[0] > 0:
            assign(a[i], E[ids[i]])
        else:
            gemm(a[i:i + 1], W_embed[ids[i]:ids[i] + 1], Wx, False, False, 0.0)
        if rows.shape[0] > 0:
            a_i, g = a[i], G[rows[i]]
            for j in range(a_i.shape[0]):
                a_i[j] += g[j]
    if rows.shape[0] == 0 and not h_is_zero:
        if packed.shape[0] > 0:
            packed_product(a, h, packed, 1.0)
        else:
            gemm(a, h, Wh, False, False, 1.0)
    for i in range(a.shape[0]):
        lstm_cell_forward(a[i], bias[i if bias.shape[0] > 1 else 0], c_prev[i], c[i], tanh_c[i],
                          h[i], 0, h.shape[1])


@helper
def _prefix_depth(N, V, Ts):
    """The encoder steps that run on tables of token prefixes: the most p <= Ts with
    4 * V**p <= N (0 when the tables would not be much smaller than the batch)."""
    p, prefixes = 0, 1
    while p < Ts and 4 * prefixes * V <= N:
        p += 1
        prefixes *= V
    return p


@helper
def _prefix_tables(p, Ts, embedding, weights, bias):
    """The encoder's states after its first p steps for every prefix of p tokens, as a trie:
    level k holds the V**(k+1) prefixes of k+1 tokens, prefix (..., u, v) at row u * V + v of
    its level, the levels one after another in hs, cs (rows, H); and G (V**p, 4H), the
    h @ Wh of step p for each prefix of p tokens (when p < Ts). weights (Wh, packed) as for
    _embedded_lstm_step; bias (1,4H)."""
    E = embedding[0]
    Wh = weights[0]
    V, H, dtype = E.shape[0], Wh.shape[0], Wh.dtype
    total, prefixes = 0, 1
    for k in range(p):
        prefixes *= V
        total += prefixes
    hs = np.empty((total, H), dtype)
    cs = np.empty((total, H), dtype)
    G = np.empty((prefixes if p < Ts else prefixes // V, 4 * H), dtype)
    a = np.empty((prefixes, 4 * H), dtype)
    tanh_c = np.empty((prefixes, H), dtype)
    c_prev = np.zeros((prefixes, H), dtype)
    tokens = np.empty(prefixes, np.int64)
    parents = np.empty(prefixes, np.int64)
    start, size = 0, 1  # the previous level's first row and rows (level -1: the empty prefix)
    for k in range(p):
        level, n = (start + size if k > 0 else 0), size * V  # this level's first row and rows
        for r in range(n):
            tokens[r], parents[r] = r % V, r // V
            if k > 0:
                assign(c_prev[r], cs[start + parents[r]])
        if k > 0:
            gemm(G[:size], hs[start:level], Wh, False, False, 0.0)
        else:
            G[0] = 0.0  # h @ Wh of the empty prefix
        # the argument types of the decoder's steps: no other version of the step compiles
        _embedded_lstm_step(a[:n], hs[level:level + n], c_prev[:n], cs[level:level + n],
                            tanh_c[:n], tokens[:n], embedding, weights, bias, False,
                            (G, parents[:n]))
        start, size = level, n
    if 0 < p < Ts:
        gemm(G, hs[start:start + size], Wh, False, False, 0.0)
    return hs, cs, G


@helper
def _attend(context, w, h_enc, h, acc):
    """One row and step: w (Ts,) = softmax(h_enc (Ts,H) @ h (H,)), context (H,) = w @ h_enc;
    acc scratch for dot."""
    Ts, H = h_enc.shape
    for s in range(Ts):
        w[s] = dot(h_enc[s], h, acc)
    softmax_row(w, w)
    context[:] = 0.0
    for s in range(Ts):
        e, ws = h_enc[s], w[s]
        for j in range(H):
            context[j] = fma(ws, e[j], context[j])


@kernel(parallel=True)
def greedy_generate(ids, weights_out, start_id, xs, encoder, state, decoder, attention,
                    n_chunks):
    """ids (N,S) int64 written with the answers; weights_out (N,S,Ts) with the attention
    weights (Ts = 0 without attention); start_id the decoder's first input id.

    The decoder starts from the encoding of xs (N,Ts) ids by encoder = (W_embed, Wx, Wh, b),
    or, when xs has no columns, from state (N,Ts,H): the encoder's states, of which the decoder
    starts from the last and attends over all. decoder = (W_embed (V,D), Wx (P+D,4H), Wh (H,4H),
    b (4H,), W (Q+H,V), b_out (V,)), the decoder's params: the first P rows of Wx, Wx_peek,
    multiply h_0 (Peeky: P = H, else 0), the first Q rows of W, W_side, multiply the context
    (``attention``) or h_0 (Peeky: Q = H; Seq2seq: 0)."""
    W_embed, Wx, Wh, b, W, b_out = decoder
    N, S = ids.shape
    H = Wh.shape[0]
    V = W.shape[1]
    P, Q = Wx.shape[0] - W_embed.shape[1], W.shape[0] - H
    Wx_peek, Wx_embed = Wx[:P], Wx[P:]
    W_side, W_out = W[:Q], W[Q:]
    dtype = Wh.dtype
    encode = xs.shape[1] > 0
    Ts = xs.shape[1] if encode else state.shape[1]
    kept = Ts if attention else 1  # encoder states a block keeps: all, or the last
    embedding = (_fold(W_embed, Wx_embed, N * S), W_embed, Wx_embed)
    enc_W_embed, enc_Wx, enc_Wh, enc_b = encoder
    enc_embedding = (_fold(enc_W_embed, enc_Wx, N * Ts if encode else 0), enc_W_embed, enc_Wx)
    enc_bias = enc_b.reshape((1, 4 * H))
    V_enc = enc_W_embed.shape[0]
    p = _prefix_depth(N, V_enc, Ts) if encode else 0
    packing = N >= PACK_ROWS
    weights = (Wh, np.empty(Wh.size if packing else 0, dtype))
    enc_weights = (enc_Wh, np.empty(enc_Wh.size if packing and encode else 0, dtype))
    if packing:
        for k in prange(n_chunks):
            pack(weights[1], Wh, k, n_chunks)
            if encode:
                pack(enc_weights[1], enc_Wh, k, n_chunks)
    prefix_hs, prefix_cs, G = _prefix_tables(p, Ts, enc_embedding, enc_weights, enc_bias)
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, N)
        B = min(BLOCK, max(hi - lo, 1))  # rows of this thread's blocks
        a = np.empty((B, 4 * H), dtype)
        h = np.empty((B, H), dtype)
        cs = np.empty((2, B, H), dtype)  # c_{t-1} and c_t, swapped every step
        tanh_c = np.empty((B, H), dtype)
        hs_enc = np.empty((B if encode else 0, kept, H), dtype)
        bias = np.empty((B, 4 * H), dtype)
        out_bias = np.empty((B, V), dtype)
        score = np.empty((B, V), dtype)
        context = np.empty((B, H), dtype)
        last = np.empty(B, np.int64)
        prefix = np.empty(B, np.int64)  # each row's prefix of p tokens, a row of its trie level
        acc = np.empty(DOT_LANES)
        for r0 in range(lo, hi, BLOCK):
            R = min(B, hi - r0)
            if encode:
                h[:R] = 0.0
                cs[0, :R] = 0.0
                prefix[:R] = 0
                level, size = 0, V_enc  # first row and rows of the trie level of step t
                for t in range(p):
                    for i in range(R):
                        prefix[i] = prefix[i] * V_enc + xs[r0 + i, t]
                        assign(h[i], prefix_hs[level + prefix[i]])
                        assign(cs[p % 2, i], prefix_cs[level + prefix[i]])
                        if attention:
                            assign(hs_enc[i, t], h[i])
                    level, size = level + size, size * V_enc
                for t in range(p, Ts):
                    gathered = prefix[:R] if t == p and p > 0 else prefix[:0]
                    _embedded_lstm_step(a[:R], h[:R], cs[t % 2, :R], cs[(t + 1) % 2, :R],
                                        tanh_c[:R], xs[r0:r0 + R, t], enc_embedding,
                                        enc_weights, enc_bias, t == 0, (G, gathered))
                    if attention:
                        assign(hs_enc[:R, t], h[:R])
                block_enc = hs_enc[:R]
            else:
                block_enc = state[r0:r0 + R]
                assign(h[:R], block_enc[:, Ts - 1])
            for i in range(R):
                assign(bias[i], b)
                assign(out_bias[i], b_out)
            if Wx_peek.shape[0] > 0:
                gemm(bias[:R], h[:R], Wx_peek, False, False, 1.0)
            if W_side.shape[0] > 0 and not attention:
                gemm(out_bias[:R], h[:R], W_side, False, False, 1.0)
            cs[0, :R] = 0.0
            last[:R] = start_id
            for s in range(S):
                _embedded_lstm_step(a[:R], h[:R], cs[s % 2, :R], cs[(s + 1) % 2, :R],
                                    tanh_c[:R], last[:R], embedding, weights, bias[:R], False,
                                    (G, prefix[:0]))
                gemm(score[:R], h[:R], W_out, False, False, 0.0)
                if attention:
                    for i in range(R):
                        _attend(context[i], weights_out[r0 + i, s], block_enc[i], h[i], acc)
                    gemm(score[:R], context[:R], W_side, False, False, 1.0)
                for i in range(R):
                    row, ob = score[i], out_bias[i]
                    best, best_id = row[0] + ob[0], 0
                    for v in range(1, V):
                        x = row[v] + ob[v]
                        if x > best:
                            best, best_id = x, v
                    last[i] = best_id
                    ids[r0 + i, s] = best_id
