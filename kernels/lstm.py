"""LSTM over all time steps: one compiled call for the forward loop, one for the backward loop.

N batch, T time steps, D input width, H hidden width. The book's gate order: columns [0:H]
forget f, [H:2H] candidate g, [2H:3H] input i, [3H:4H] output o of

    A_t = x_t @ Wx + h_{t-1} @ Wh + b
    f, i, o = sigmoid(A_t[f, i, o]);  g = tanh(A_t[g])
    c_t = f * c_{t-1} + g * i;        h_t = o * tanh(c_t)

Work that does not depend on the recurrence leaves the time loop (cuDNN's layout):
forward runs xs @ Wx for all steps as one GEMM, then per step only A_t += h_{t-1} @ Wh and one
fused pass over the gates; backward runs per step only dh_{t-1} = dA_t @ Wh.T and one fused pass,
and afterwards dWx, dWh, dxs as one GEMM each. Every array is batch-major like the book's and
C-contiguous; a step's rows (``hs[:, t]``) reach BLAS as a strided matrix, never a copy.

``saved`` (written by forward, read by backward, never modified by backward):
    gates   (N,T,4H)  activated f, g, i, o
    cs      (N,T+1,H) cs[:, 0] = c0, cs[:, t+1] = c_t
    tanh_cs (N,T,H)   tanh(c_t)
    h_prevs (N,T,H)   h_{t-1} of every step, h_prevs[:, 0] = h0 (so dWh is one GEMM)
Batch rows are independent: calling a kernel on a block of rows of every array computes that
block, which is how work is split across threads.
"""

from .activations import sigmoid, tanh
from .blas import gemm
from .jit import helper, kernel


@helper
def lstm_cell_forward(a, b, c_prev, c, tanh_c, h):
    """One step of one batch row. a (4H,) holds x @ Wx + h_prev @ Wh (no bias) and is overwritten
    with the activated gates f, g, i, o; b (4H,); c_prev (H,); c, tanh_c, h (H,) written."""
    H = c.shape[0]
    af, ag, ai, ao = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
    bf, bg, bi, bo = b[:H], b[H:2 * H], b[2 * H:3 * H], b[3 * H:]
    for j in range(H):
        f = sigmoid(af[j] + bf[j])
        g = tanh(ag[j] + bg[j])
        i = sigmoid(ai[j] + bi[j])
        o = sigmoid(ao[j] + bo[j])
        af[j], ag[j], ai[j], ao[j] = f, g, i, o
        c[j] = f * c_prev[j] + g * i
        tanh_c[j] = tanh(c[j])
        h[j] = o * tanh_c[j]


@kernel
def lstm_forward(hs, saved, xs, Wx, Wh, b, h0, c0, h0_is_zero):
    """hs (N,T,H) out; saved see module doc; xs (N,T,D); Wx (D,4H); Wh (H,4H); b (4H,);
    h0, c0 (N,H) initial state; h0_is_zero skips the first step's h0 @ Wh."""
    gates, cs, tanh_cs, h_prevs = saved
    N, T, D = xs.shape
    H = Wh.shape[0]
    if N == 0 or T == 0:
        return
    gemm(gates.reshape(N * T, 4 * H), xs.reshape(N * T, D), Wx, False, False, 0.0)
    h_prevs[:, 0] = h0
    cs[:, 0] = c0
    for t in range(T):
        if t > 0 or not h0_is_zero:
            gemm(gates[:, t], h_prevs[:, t], Wh, False, False, 1.0)
        for n in range(N):
            lstm_cell_forward(gates[n, t], b, cs[n, t], cs[n, t + 1], tanh_cs[n, t], hs[n, t])
            if t + 1 < T:
                h_prevs[n, t + 1] = hs[n, t]


@kernel
def lstm_backward_through_time(dA, dh0, dc, dhs, Wh, saved):
    """The backward time loop. dA (N,T,4H) gate-input gradients, dh0 (N,H) gradient w.r.t. h0:
    written; dc (N,H) scratch; dhs (N,T,H) upstream gradient; Wh (H,4H); saved from forward."""
    gates, cs, tanh_cs, _ = saved
    N, T, H = dhs.shape
    one = dA.dtype.type(1.0)
    dh_next = dh0  # holds dh_t flowing back from step t+1; after step 0 it is dh0
    dh_next[:] = 0.0
    dc[:] = 0.0
    for t in range(T - 1, -1, -1):
        for n in range(N):
            a, da = gates[n, t], dA[n, t]
            f, g, i, o = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
            daf, dag, dai, dao = da[:H], da[H:2 * H], da[2 * H:3 * H], da[3 * H:]
            c_prev, tc, dh_up, dh_rec, dc_n = cs[n, t], tanh_cs[n, t], dhs[n, t], dh_next[n], dc[n]
            for j in range(H):
                dh = dh_up[j] + dh_rec[j]
                # h_t = o * tanh(c_t);  c_t = f * c_{t-1} + g * i
                dcj = dc_n[j] + dh * o[j] * (one - tc[j] * tc[j])
                # f = sigmoid(A_f): dA_f = df * f * (1 - f), and so on for g (tanh), i, o
                daf[j] = dcj * c_prev[j] * f[j] * (one - f[j])
                dag[j] = dcj * i[j] * (one - g[j] * g[j])
                dai[j] = dcj * g[j] * i[j] * (one - i[j])
                dao[j] = dh * tc[j] * o[j] * (one - o[j])
                dc_n[j] = dcj * f[j]
        # A_t = ... + h_{t-1} @ Wh  =>  dh_{t-1} = dA_t @ Wh.T
        gemm(dh_next, dA[:, t], Wh, False, True, 0.0)


@kernel
def lstm_backward_weights(dxs, dWx, dWh, db, dA, xs, Wx, h_prevs):
    """The work hoisted out of the backward loop: one GEMM each for dxs (N,T,D), dWx (D,4H),
    dWh (H,4H), and db (4H,) = column sums of dA (N,T,4H); xs (N,T,D), h_prevs (N,T,H)."""
    N, T, D = xs.shape
    H = h_prevs.shape[2]
    dA2 = dA.reshape(N * T, 4 * H)
    # A_all = xs @ Wx + h_prevs @ Wh + b
    gemm(dWx, xs.reshape(N * T, D), dA2, True, False, 0.0)
    gemm(dWh, h_prevs.reshape(N * T, H), dA2, True, False, 0.0)
    gemm(dxs.reshape(N * T, D), dA2, Wx, False, True, 0.0)
    db[:] = 0.0
    for r in range(N * T):
        row = dA2[r]
        for k in range(4 * H):
            db[k] += row[k]
