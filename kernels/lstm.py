"""LSTM over all time steps: one compiled call for the forward loop, one for the backward loop.

N batch, T time steps, D input width, H hidden width. The book's gate order: columns [0:H]
forget f, [H:2H] candidate g, [2H:3H] input i, [3H:4H] output o of

    A_t = x_t @ Wx + h_{t-1} @ Wh + b
    f, i, o = sigmoid(A_t[f, i, o]);  g = tanh(A_t[g])
    c_t = f * c_{t-1} + g * i;        h_t = o * tanh(c_t)

Work that does not depend on the recurrence leaves the time loop (cuDNN's layout): forward
runs xs @ Wx for all steps as one GEMM, then per step only A_t += h_{t-1} @ Wh and one fused
pass over the gates; backward runs per step only dh_{t-1} = dA_t @ Wh.T and one fused pass,
then dxs, dWx, dWh as one GEMM each (``lstm_weight_grads``). Arrays are batch-major like the
book's and C-contiguous; a step's rows (``hs[:, t]``) reach BLAS as a strided matrix, never as
a copy. The weights every step multiplies, Wh forward and Wh.T backward, are packed once per
call (``tiles.pack``) into the caller's scratch ``packed``: by each thread for itself when
threads split rows, each its units' share when they split units.
Measured in one process, alternating with the kernels that read Wh where it lies (2 threads,
ms, median of 15, same results bit for bit): N=20, T=35, D=H=650 forward 32.1 against 35.6,
backward 54.3 against 64.7; at the book's sizes (N=128, H=128 and 256) within the noise.

Threads: the time loops run on ``n_chunks`` threads in one of two ways. Batch rows are
independent through time, so a batch of many rows is split by rows, with no synchronisation
per step. A batch of few rows is split by hidden units instead (each thread owns units
[lo, hi) of all four gates, and the threads meet once per step; the ``_by_units`` kernels,
chosen by ``time_loops``): with few rows the per-step product is dominated by reading Wh, and
each thread then reads only its share of it. Measured, forward+backward on 2 threads, by units
against by rows: N=20, T=35, D=H=650 93 against 113 ms; N=4, T=10, H=256 1.2 against 1.7 ms;
N=24, T=7, H=128 0.83 against 0.99 ms; from 16 rows per thread on, rows win (N=32, T=29,
H=256: 15.8 against 13.2 ms). The weight gradients, which sum over all rows, are split by
output column. No partial sums are combined across threads, so the result does not depend on
the number of threads beyond the rounding of BLAS's blocking.

``saved`` (written by forward, read by backward, never modified by backward):
    gates   (N,T,4H)  activated f, g, i, o
    cs      (N,T+1,H) cs[:, 0] = c0, cs[:, t+1] = c_t
    tanh_cs (N,T,H)   tanh(c_t)
    h_prevs (N,T,H)   h_{t-1} of every step, h_prevs[:, 0] = h0 (so dWh is one GEMM)
"""

import numpy as np
from numba import prange, types
from numba.extending import overload

from .activations import fma, sigmoid, tanh
from .blas import column_sums, gemm, packed_product
from .jit import JIT_OPTIONS, chunk, helper, kernel
from .tiles import pack
from .views import assign, span

# Below this many batch rows per thread, the time loops split hidden units across threads.
ROWS_PER_THREAD = 16


def split_by_units(N, n_chunks):
    """Whether the time loops of N rows on n_chunks threads split hidden units (the ``_by_units``
    kernels) rather than batch rows across threads."""
    return n_chunks > 1 and N < ROWS_PER_THREAD * n_chunks


@helper
def _gates(x, lo, hi):
    """Units [lo, hi) of each gate of x (4H,): four views that start at index 0 (offsets into
    one view would cost sign checks that keep LLVM from vectorising the cell loops)."""
    H, n = x.shape[0] // 4, hi - lo
    return span(x, lo, n), span(x, H + lo, n), span(x, 2 * H + lo, n), span(x, 3 * H + lo, n)


@helper
def _cell_forward(af, ag, ai, ao, bf, bg, bi, bo, c_prev, c, tanh_c, h):
    # One loop per gate, then one for the state: a unit's five activations in one loop form a
    # dependency chain too long for the core to overlap iterations (measured, H=128, one
    # thread: 5.1 against 4.4 ns per unit; the same operations, so the same bits).
    n = np.uint64(c.shape[0])
    for j in range(n):
        af[j] = sigmoid(af[j] + bf[j])
    for j in range(n):
        ag[j] = tanh(ag[j] + bg[j])
    for j in range(n):
        ai[j] = sigmoid(ai[j] + bi[j])
    for j in range(n):
        ao[j] = sigmoid(ao[j] + bo[j])
    for j in range(n):
        cj = fma(af[j], c_prev[j], ag[j] * ai[j])
        c[j] = cj
        tc = tanh(cj)
        tanh_c[j] = tc
        h[j] = ao[j] * tc


@helper
def lstm_cell_forward(a, b, c_prev, c, tanh_c, h, lo, hi):
    """Hidden units [lo, hi) of one step of one batch row. a (4H,) holds x @ Wx + h_prev @ Wh
    (no bias) and is overwritten with the activated gates f, g, i, o; b (4H,); c_prev (H,);
    c, tanh_c, h (H,) written."""
    af, ag, ai, ao = _gates(a, lo, hi)
    bf, bg, bi, bo = _gates(b, lo, hi)
    n = hi - lo
    _cell_forward(af, ag, ai, ao, bf, bg, bi, bo, span(c_prev, lo, n), span(c, lo, n),
                  span(tanh_c, lo, n), span(h, lo, n))


@helper
def _cell_backward(daf, dag, dai, dao, f, g, i, o, c_prev, tanh_c, dh_out, dh_next, dc):
    one = c_prev.dtype.type(1.0)
    for j in range(np.uint64(c_prev.shape[0])):
        tc = tanh_c[j]
        dh = dh_out[j] + dh_next[j]
        # h_t = o * tanh(c_t);  c_t = f * c_{t-1} + g * i
        dcj = dc[j] + dh * o[j] * (one - tc * tc)
        # f = sigmoid(A_f) => dA_f = df * f * (1 - f); likewise i, o; g = tanh(A_g)
        daf[j] = dcj * c_prev[j] * f[j] * (one - f[j])
        dag[j] = dcj * i[j] * (one - g[j] * g[j])
        dai[j] = dcj * g[j] * i[j] * (one - i[j])
        dao[j] = dh * tc * o[j] * (one - o[j])
        dc[j] = dcj * f[j]


@helper
def lstm_cell_backward(da, a, c_prev, tanh_c, dh_out, dh_next, dc, lo, hi):
    """Hidden units [lo, hi) of one backward step of one batch row. da (4H,) written: gradient
    w.r.t. the gate inputs; a (4H,) activated gates; c_prev, tanh_c (H,); dh_out (H,) upstream
    gradient of h_t; dh_next (H,) gradient of h_t from step t+1; dc (H,) gradient of c_t from
    step t+1, replaced by that of c_{t-1}."""
    daf, dag, dai, dao = _gates(da, lo, hi)
    f, g, i, o = _gates(a, lo, hi)
    n = hi - lo
    _cell_backward(daf, dag, dai, dao, f, g, i, o, span(c_prev, lo, n), span(tanh_c, lo, n),
                   span(dh_out, lo, n), span(dh_next, lo, n), span(dc, lo, n))


def input_projection(A, inputs, W):
    """A (R,4H) = the input projection of R rows (kernels only): inputs (R,D) floats @ W (D,4H),
    or for inputs (R,) token ids, rows inputs[r] of W (V,4H) = W_embed @ Wx gathered."""
    raise TypeError("fastseq.kernels.lstm.input_projection can only be called from kernels")


@overload(input_projection, jit_options=JIT_OPTIONS)
def _input_projection(A, inputs, W):
    if isinstance(inputs.dtype, types.Integer):
        def gather(A, inputs, W):
            for r in range(A.shape[0]):
                assign(A[r], W[inputs[r]])
        return gather
    return lambda A, inputs, W: gemm(A, inputs, W, False, False, 0.0)


@helper
def _own_copy(packed, B, k):
    """Thread k's part of ``packed`` with all of B packed: when threads split batch rows, each
    packs its own copy, in its own cache, within the parallel region that runs its time loop,
    so that packing adds no thread launch of its own to the call."""
    n = B.size
    own = packed[k * n:(k + 1) * n]
    pack(own, B, 0, 1)
    return own


@helper
def _unit_share(packed, K, lo, hi, k):
    """The part of ``packed`` that holds the packed columns of hidden units [lo, hi) of gate k
    (of weights with K rows and 4H columns): a thread's share when threads split units."""
    n = hi - lo
    return packed[K * (4 * lo + k * n):K * (4 * lo + (k + 1) * n)]


@helper
def _pack_unit_share(packed, Wh, lo, hi):
    """Pack the columns of hidden units [lo, hi) of each gate of Wh (H,4H) for _step_forward."""
    H = Wh.shape[0]
    for k in range(4):
        pack(_unit_share(packed, H, lo, hi, k), Wh[:, k * H + lo:k * H + hi], 0, 1)


@helper
def _step_forward(t, hs, gates, cs, tanh_cs, h_prevs, packed, bias, h0_is_zero, lo, hi):
    """Step t for all rows of the block, hidden units [lo, hi); gates[:, t] holds the input
    projection; packed: Wh packed whole (all units) or by _pack_unit_share."""
    N, T, H = hs.shape
    if t > 0 or not h0_is_zero:
        if hi - lo == H:
            packed_product(gates[:, t], h_prevs[:, t], packed, 1.0)
        else:  # the four gates' columns of units [lo, hi)
            for k in range(4):
                packed_product(gates[:, t, k * H + lo:k * H + hi], h_prevs[:, t],
                               _unit_share(packed, H, lo, hi, k), 1.0)
    for n in range(N):
        lstm_cell_forward(gates[n, t], bias[n if bias.shape[0] > 1 else 0], cs[n, t],
                          cs[n, t + 1], tanh_cs[n, t], hs[n, t], lo, hi)
        if t + 1 < T:
            assign(h_prevs[n, t + 1, lo:hi], hs[n, t, lo:hi])


@helper
def _forward_start(saved, inputs, h0, c0):
    """The first step's h_prev and c_prev from h0, c0; the gate buffer and the inputs with one
    row per (n, t), for the input projection."""
    gates, cs, _, h_prevs = saved
    N, T = gates.shape[:2]
    assign(h_prevs[:, 0], h0)
    assign(cs[:, 0], c0)
    return gates.reshape(N * T, gates.shape[2]), inputs.reshape((N * T,) + inputs.shape[2:])


@kernel(parallel=True)
def lstm_forward(hs, saved, inputs, W, Wh, packed, bias, h0, c0, h0_is_zero, n_chunks):
    """hs (N,T,H) out; saved see module doc; inputs xs (N,T,D) with W = Wx (D,4H), or token ids
    (N,T) int64 with W = W_embed @ Wx (V,4H) (an embedding folded into the projection);
    Wh (H,4H); packed (n_chunks*4H*H,) scratch (each thread's copy of Wh packed for the steps'
    products); bias (1,4H) the layer's b, or (N,4H) one bias per row (b plus an input that is
    constant over time); h0, c0 (N,H) initial state; h0_is_zero skips the first step's
    h0 @ Wh. Batch rows split across the n_chunks threads (``split_by_units`` False)."""
    gates, cs, tanh_cs, h_prevs = saved
    N, T, H = hs.shape
    A_all, inputs_all = _forward_start(saved, inputs, h0, c0)
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, N)
        if lo < hi:
            own = _own_copy(packed, Wh, k)
            input_projection(A_all[lo * T:hi * T], inputs_all[lo * T:hi * T], W)
            rows_bias = bias[lo:hi] if bias.shape[0] > 1 else bias
            for t in range(T):
                _step_forward(t, hs[lo:hi], gates[lo:hi], cs[lo:hi], tanh_cs[lo:hi],
                              h_prevs[lo:hi], own, rows_bias, h0_is_zero, 0, H)


@kernel(parallel=True)
def lstm_forward_by_units(hs, saved, inputs, W, Wh, packed, bias, h0, c0, h0_is_zero,
                          n_chunks):
    """lstm_forward for few rows (``split_by_units`` True): hidden units split across the
    n_chunks threads, which meet once per step, each packing its units' share of Wh into
    packed (of which 4H*H are used). A kernel of its own, so that a training run
    compiles only the split it uses (measured, PeekySeq2seq's first forward and backward at
    N=128: 28.4 + 27.6 s of compiling with both splits in one kernel, 23.1 + 22.2 s without)."""
    gates, cs, tanh_cs, h_prevs = saved
    N, T, H = hs.shape
    A_all, inputs_all = _forward_start(saved, inputs, h0, c0)
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, N * T)
        input_projection(A_all[lo:hi], inputs_all[lo:hi], W)
        lo, hi = chunk(k, n_chunks, H)
        _pack_unit_share(packed, Wh, lo, hi)
    for t in range(T):
        for k in prange(n_chunks):
            lo, hi = chunk(k, n_chunks, H)
            if lo < hi:
                _step_forward(t, hs, gates, cs, tanh_cs, h_prevs, packed, bias, h0_is_zero,
                              lo, hi)


@helper
def _step_backward(t, dA, dh_next, dc, dhs, P, gates, cs, tanh_cs, lo, hi):
    """Backward step t for all rows of the block, hidden units [lo, hi): first dh_t, the
    gradient arriving from step t+1 (dA_{t+1} @ Wh.T, with P the columns [lo, hi) of Wh.T
    packed; zero at the last step), then dA_t."""
    N, T, H = dhs.shape
    if t == T - 1:
        dh_next[:, lo:hi] = 0.0
        dc[:, lo:hi] = 0.0
    else:
        packed_product(dh_next[:, lo:hi], dA[:, t + 1], P, 0.0)
    for n in range(N):
        lstm_cell_backward(dA[n, t], gates[n, t], cs[n, t], tanh_cs[n, t], dhs[n, t],
                           dh_next[n], dc[n], lo, hi)


@kernel(parallel=True)
def lstm_backward(dA, dh0, dc, dhs, Wh, packed, saved, n_chunks):
    """The backward time loop: dA (N,T,4H) written with the gradient w.r.t. every step's gate
    inputs, dh0 (N,H) with that w.r.t. h0; dc (N,H) and packed (n_chunks*4H*H,) scratch;
    dhs (N,T,H) upstream gradient; Wh (H,4H) and saved as given to / written by lstm_forward.
    Batch rows split across the n_chunks threads, each with its own copy of Wh.T packed."""
    gates, cs, tanh_cs, _ = saved  # h_prevs serves the weight gradients only
    N, T, H = dhs.shape
    # A_t = ... + h_{t-1} @ Wh  =>  dh_{t-1} = dA_t @ Wh.T; dh0 = dA_0 @ Wh.T is the last one
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, N)
        if lo < hi:
            own = _own_copy(packed, Wh.T, k)
            for t in range(T - 1, -1, -1):
                _step_backward(t, dA[lo:hi], dh0[lo:hi], dc[lo:hi], dhs[lo:hi], own,
                               gates[lo:hi], cs[lo:hi], tanh_cs[lo:hi], 0, H)
            packed_product(dh0[lo:hi], dA[lo:hi, 0], own, 0.0)


@kernel(parallel=True)
def lstm_backward_by_units(dA, dh0, dc, dhs, Wh, packed, saved, n_chunks):
    """lstm_backward for few rows, after lstm_forward_by_units: hidden units split across the
    n_chunks threads, each with its columns of Wh.T packed (4H*H of packed used)."""
    gates, cs, tanh_cs, _ = saved
    N, T, H = dhs.shape
    G = 4 * H
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, H)
        pack(packed[G * lo:G * hi], Wh[lo:hi].T, 0, 1)
    for t in range(T - 1, -1, -1):
        for k in prange(n_chunks):
            lo, hi = chunk(k, n_chunks, H)
            if lo < hi:
                _step_backward(t, dA, dh0, dc, dhs, packed[G * lo:G * hi], gates, cs, tanh_cs,
                               lo, hi)
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, H)
        if lo < hi:
            packed_product(dh0[:, lo:hi], dA[:, 0], packed[G * lo:G * hi], 0.0)


def time_loops(N, n_chunks):
    """The forward and backward time-loop kernels for N rows on n_chunks threads: split by
    hidden units or by batch rows (``split_by_units``)."""
    if split_by_units(N, n_chunks):
        return lstm_forward_by_units, lstm_backward_by_units
    return lstm_forward, lstm_backward


@kernel(parallel=True)
def lstm_weight_grads(dxs, grads, dA, xs, Wx, h_prevs, n_chunks):
    """After lstm_backward: dxs (N,T,D) and grads = (dWx (D,4H), dWh (H,4H), db (4H,)) written
    from dA (N,T,4H); xs (N,T,D), Wx (D,4H) as given to lstm_forward; h_prevs (N,T,H) saved."""
    dWx, dWh, db = grads
    N, T, D = xs.shape
    H = h_prevs.shape[2]
    dA_all = dA.reshape(N * T, 4 * H)
    xs_all = xs.reshape(N * T, D)
    # A_all = xs @ Wx + h_prevs @ Wh + b, summed over all N*T rows
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, N * T)
        if lo < hi:
            gemm(dxs.reshape(N * T, D)[lo:hi], dA_all[lo:hi], Wx, False, True, 0.0)
    for k in prange(n_chunks):
        lo, hi = chunk(k, n_chunks, 4 * H)
        if lo < hi:
            gemm(dWx[:, lo:hi], xs_all, dA_all[:, lo:hi], True, False, 0.0)
            gemm(dWh[:, lo:hi], h_prevs.reshape(N * T, H), dA_all[:, lo:hi], True, False, 0.0)
            column_sums(db[lo:hi], dA_all, lo)


@kernel(parallel=True)
def lstm_weight_grads_tokens(dW_embed, grads, dE, dA, ids, W_embed, Wx, h_prevs, n_chunks):
    """lstm_weight_grads for embedded token ids (see lstm_forward): dW_embed (V,D) written
    instead of dxs, and no GEMM of size N*T for the input weights. dE (V,4H) scratch;
    ids (N,T); W_embed (V,D); the rest as in lstm_weight_grads."""
    dWx, dWh, db = grads
    N, T = ids.shape
    H = h_prevs.shape[2]
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
