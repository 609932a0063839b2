"""The book's time layers with the hot loops in compiled kernels.

N batch, T time steps, D input width, H hidden width, V vocabulary (or output width M).

Each layer has the book's surface: ``params`` and ``grads`` (lists built once; grads are written
in place, list entries never rebound), ``forward`` and ``backward``. The layers check their
inputs (see ``fastseq._checks``), own the scratch memory, and call ``fastseq.kernels``.
"""

import numpy as np

from . import _checks as checks
from ._workspace import Workspace
from .threads import chunks
from .kernels.affine import (affine_backward, affine_forward, constant_input_backward,
                             constant_input_forward)
from .kernels.attention import attention_backward, attention_forward
from .kernels.blas import matmul
from .kernels.embedding import embedding_backward, embedding_forward
from .kernels.lstm import lstm_weight_grads, lstm_weight_grads_tokens, time_loops
from .kernels.softmax import softmax_cross_entropy_backward, softmax_cross_entropy_forward


class _Layer:
    """params/grads bookkeeping shared by the layers with weights."""

    def __init__(self, names, *params):
        self.dtype = checks.weights(names, params)
        self.params = list(params)
        self.grads = [np.zeros_like(p) for p in params]
        self._shapes = [p.shape for p in params]
        self._cache = None

    def _checked_params(self, with_grads=True):
        """The params, checked before a kernel reads them, and the grads, which a backward will
        write (inference, ``with_grads=False``, leaves them alone)."""
        checks.unchanged(self, self._shapes, ("params", "grads") if with_grads else ("params",))
        return self.params


class TimeEmbedding(_Layer):
    """Rows of W for every token id: params [W (V,D)]."""

    def __init__(self, W):
        super().__init__(("W",), W)
        if W.ndim != 2:
            raise ValueError(f"TimeEmbedding needs W of shape (V, D), got shape {W.shape}")

    def forward(self, xs):
        """xs (N,T) integer ids in [0, V) -> (N,T,D)."""
        W, = self._checked_params()
        ids = checks.token_ids("xs", xs, W.shape[0])
        out = np.empty(ids.shape + (W.shape[1],), self.dtype)
        embedding_forward(out, ids, W)
        self._cache = ids
        return out

    def backward(self, dout):
        """dout (N,T,D): scatter-adds into grads[0] (repeated ids accumulate); returns None."""
        ids = checks.forward_done(self, self._cache)
        self._checked_params()
        dW, = self.grads
        dout = checks.floats("dout", dout, self.dtype, ids.shape + (dW.shape[1],))
        embedding_backward(dW, dout, ids)


class TimeLSTM(_Layer):
    """LSTM over T steps: params [Wx (D,4H), Wh (H,4H), b (4H,)], gate order f, g, i, o.

    ``h``, ``c`` hold the last state (None until the first forward); a stateful layer starts the
    next forward from them, otherwise every forward starts from zeros. ``dh`` is the gradient
    with respect to the initial h, set by backward.

    ``forward(xs, const=h)`` feeds the LSTM concat([h, xs_t]) at every step, h (N,Dc) being the
    same at all steps and owning Wx's first Dc rows (the peeky decoder): h's share of the input
    projection is computed once, not T times, and backward leaves its gradient in ``dconst``.
    """

    def __init__(self, Wx, Wh, b, stateful=False):
        super().__init__(("Wx", "Wh", "b"), Wx, Wh, b)
        H = Wh.shape[0] if Wh.ndim == 2 else 0
        if H == 0 or Wx.ndim != 2 or Wx.shape[1] != 4 * H or Wh.shape != (H, 4 * H) \
                or b.shape != (4 * H,):
            raise ValueError(f"TimeLSTM needs Wx (D, 4H), Wh (H, 4H), b (4H,); got "
                             f"Wx {Wx.shape}, Wh {Wh.shape}, b {b.shape}")
        self.stateful = stateful
        self.h = self.c = None
        self.dh = self.dconst = None
        self._work = Workspace()

    def set_state(self, h, c=None):
        """Start the next (stateful) forward from h (N,H) and c (N,H), zeros when c is None."""
        H = self.params[1].shape[0]
        self.h = checks.floats("h", h, self.dtype, (None, H))
        self.c = None if c is None else checks.floats("c", c, self.dtype, self.h.shape)

    def reset_state(self):
        self.h = self.c = None

    def forward(self, xs, const=None, embed=None):
        """xs (N,T,D) -> hs (N,T,H); with const (N,Dc), xs is (N,T,D-Dc).

        With ``embed``, the TimeEmbedding whose output would be xs, xs are its token ids (N,T):
        the embedding is folded into the input projection (rows of W_embed @ Wx are gathered
        instead of multiplying every step's input), and backward fills embed's grads too.
        """
        Wx, Wh, b = self._checked_params()
        D, H = Wx.shape[0], Wh.shape[0]
        const, bias = _constant_input(self, const, Wx, b, self._work)
        Dc = 0 if const is None else const.shape[1]
        rows = None if const is None else const.shape[0]
        if embed is None:
            xs = checks.floats("xs", xs, self.dtype, (rows, None, D - Dc))
        else:
            W_embed, = embed._checked_params()
            if embed.dtype != self.dtype or W_embed.shape[1] != D - Dc:
                raise ValueError(f"embed makes {embed.dtype} vectors of width {W_embed.shape[1]}; "
                                 f"this LSTM takes {self.dtype} inputs of width {D - Dc}")
            xs = checks.token_ids("xs", xs, W_embed.shape[0], (rows, None))
            E = self._work.get("E", (W_embed.shape[0], 4 * H), self.dtype)
            fold_embedding(W_embed, Wx[Dc:], out=E)
        N, T = xs.shape[:2]
        zero_state = not self.stateful or self.h is None
        if zero_state:
            h0 = c0 = np.zeros((N, H), self.dtype)
        else:  # h and c are public attributes: checked here, not only in set_state
            h0 = checks.floats("h", self.h, self.dtype, (None, H))
            if h0.shape[0] != N:
                raise ValueError(f"xs has batch size {N} but the stateful LSTM holds a state for "
                                 f"{h0.shape[0]} rows; call reset_state() or set_state()")
            c0 = (np.zeros((N, H), self.dtype) if self.c is None
                  else checks.floats("c", self.c, self.dtype, (N, H)))
        work = self._work
        saved = (work.get("gates", (N, T, 4 * H), self.dtype),
                 work.get("cs", (N, T + 1, H), self.dtype),
                 work.get("tanh_cs", (N, T, H), self.dtype),
                 work.get("h_prevs", (N, T, H), self.dtype))
        hs = np.empty((N, T, H), self.dtype)
        n_chunks = chunks()
        forward, _ = time_loops(N, n_chunks)
        forward(hs, saved, xs, Wx[Dc:] if embed is None else E, Wh,
                work.get("packed", (n_chunks * 4 * H * H,), self.dtype), bias, h0, c0,
                zero_state, n_chunks)
        self.h = hs[:, -1].copy()
        self.c = saved[1][:, -1].copy()
        self._cache = (xs, const, embed, saved)
        return hs

    def backward(self, dhs):
        """dhs (N,T,H) -> dxs (N,T,D) (None when forward got ``embed``: its grads are written
        instead); writes grads, sets dh (N,H) (and dconst (N,Dc))."""
        xs, const, embed, saved = checks.forward_done(self, self._cache)
        Wx, Wh, _ = self._checked_params()
        N, T = xs.shape[:2]
        H = Wh.shape[0]
        Dc = 0 if const is None else const.shape[1]
        dhs = checks.floats("dhs", dhs, self.dtype, (N, T, H))
        dA = self._work.get("dA", (N, T, 4 * H), self.dtype)
        dh0 = np.empty((N, H), self.dtype)
        n_chunks = chunks()
        _, backward = time_loops(N, n_chunks)
        backward(dA, dh0, self._work.get("dc", (N, H), self.dtype), dhs, Wh,
                 self._work.get("packed", (n_chunks * 4 * H * H,), self.dtype), saved, n_chunks)
        dWx, dWh, db = self.grads
        grads = (dWx[Dc:], dWh, db)
        if embed is None:
            dxs = np.empty((N, T, Wx.shape[0] - Dc), self.dtype)
            lstm_weight_grads(dxs, grads, dA, xs, Wx[Dc:], saved[3], n_chunks)
        else:
            dxs = None
            W_embed, = embed._checked_params()
            dE = self._work.get("dE", (W_embed.shape[0], 4 * H), self.dtype)
            lstm_weight_grads_tokens(embed.grads[0], grads, dE, dA, xs, W_embed, Wx[Dc:],
                                     saved[3], n_chunks)
        self.dh = dh0
        self.dconst = _constant_input_backward(self, const, dWx, Wx, dA)
        return dxs


class TimeAffine(_Layer):
    """x @ W + b at every step: params [W (D,M), b (M,)].

    x may be a tuple of arrays (N,T,D_i) standing for their concatenation along the last axis
    (which is never built); backward then returns a tuple of their gradients. With
    ``const`` (N,Dc), an input the same at every step that owns W's first Dc rows, as in
    TimeLSTM; backward leaves its gradient in ``dconst``.
    """

    def __init__(self, W, b):
        super().__init__(("W", "b"), W, b)
        if W.ndim != 2 or b.shape != (W.shape[1],):
            raise ValueError(f"TimeAffine needs W (D, M) and b (M,); got W {W.shape}, b {b.shape}")
        self.dconst = None
        self._work = Workspace()

    def forward(self, x, const=None):
        """x (N,T,D) (or a tuple of parts, see the class doc) -> (N,T,M)."""
        W, b = self._checked_params()
        D, M = W.shape
        const, bias = _constant_input(self, const, W, b, self._work)
        Dc = 0 if const is None else const.shape[1]
        parts = _time_parts(x, self.dtype, None if const is None else const.shape[0], D - Dc)
        N, T, _ = parts[0].shape
        out = np.empty((N, T, M), self.dtype)
        affine_forward(out, parts, W[Dc:], bias, chunks())
        self._cache = (x, parts, const)
        return out

    def backward(self, dout):
        """dout (N,T,M) -> dx (N,T,D), or a tuple of part gradients; writes grads."""
        x, parts, const = checks.forward_done(self, self._cache)
        W, _ = self._checked_params()
        N, T, _ = parts[0].shape
        M = W.shape[1]
        Dc = 0 if const is None else const.shape[1]
        dout = checks.floats("dout", dout, self.dtype, (N, T, M))
        dparts = tuple(np.empty_like(p) for p in parts)
        dW, db = self.grads
        affine_backward(dparts, dW[Dc:], db, dout, parts, W[Dc:], chunks())
        self.dconst = _constant_input_backward(self, const, dW, W, dout)
        return dparts if isinstance(x, tuple) else dparts[0]


def _time_parts(x, dtype, N, width):
    """x, or the parts of a concatenation, as a tuple of checked (N,T,D_i) arrays."""
    if not isinstance(x, tuple):
        return (checks.floats("x", x, dtype, (N, None, width)),)
    if not x:
        raise ValueError("x is an empty tuple; pass an array (N,T,D) or a tuple of them")
    first = checks.floats("x[0]", x[0], dtype, (N, None, None))
    parts = (first,) + tuple(checks.floats(f"x[{i}]", p, dtype, first.shape[:2] + (None,))
                             for i, p in enumerate(x[1:], 1))
    if sum(p.shape[2] for p in parts) != width:
        raise ValueError(f"the parts of x have widths {[p.shape[2] for p in parts]}, which add "
                         f"up to {sum(p.shape[2] for p in parts)}; the weights expect {width}")
    return parts


def fold_embedding(W_embed, Wx, out=None):
    """W_embed @ Wx (V, 4H): row v is the input projection of token v, so an embedded LSTM
    gathers rows instead of multiplying every step's input. Weights C-contiguous (checked)."""
    if out is None:
        out = np.empty((W_embed.shape[0], Wx.shape[1]), Wx.dtype)
    matmul(out, W_embed, Wx)
    return out


def _constant_input(layer, const, W, b, work):
    """(checked const, the bias to add at every step): b as (1,M), or (N,M) rows
    const @ W[:Dc] + b when an input constant over time is given."""
    if const is None:
        return None, b.reshape(1, -1)
    const = checks.floats("const", const, layer.dtype, (None, None))
    Dc = const.shape[1]
    if Dc >= W.shape[0]:
        raise ValueError(f"const has width {Dc} but the weights have {W.shape[0]} input rows; "
                         "const must own only the first rows of the input")
    bias_rows = work.get("const_bias", (const.shape[0], W.shape[1]), layer.dtype)
    constant_input_forward(bias_rows, const, W[:Dc], b, chunks())
    return const, bias_rows


def _constant_input_backward(layer, const, dW, W, d_all):
    """Gradient of the constant input (returned) and of W's rows it owns (written)."""
    if const is None:
        return None
    N, Dc = const.shape
    dconst = np.empty((N, Dc), layer.dtype)
    d_sum = layer._work.get("const_dsum", (N, W.shape[1]), layer.dtype)
    constant_input_backward(dW[:Dc], dconst, d_sum, d_all, const, W[:Dc], chunks())
    return dconst


class TimeSoftmaxWithLoss:
    """Mean cross-entropy of softmax(xs) over the targets that are not ``ignore_label``."""

    def __init__(self):
        self.params, self.grads = [], []
        self.ignore_label = -1
        self._cache = None

    def forward(self, xs, ts):
        """xs (N,T,V) scores; ts (N,T) int labels or (N,T,V) one-hot -> scalar loss."""
        xs = checks.floats("xs", xs, None, (None, None, None))
        N, T, V = xs.shape
        if isinstance(ts, np.ndarray) and ts.ndim == 3:  # one-hot targets
            ts = checks.one_hot_labels("ts", ts, xs.shape)
        labels = checks.token_ids("ts", ts, V, (N, T), self.ignore_label)
        probs = np.empty((N * T, V), xs.dtype)
        loss, kept, bad = softmax_cross_entropy_forward(
            probs, xs.reshape(N * T, V), labels.reshape(N * T), self.ignore_label, chunks())
        if bad:
            raise ValueError(f"xs (scores) holds NaN or inf in {bad} of {N * T} rows; "
                             "the model diverged or its input is corrupt (try a lower learning "
                             "rate or gradient clipping)")
        if kept == 0:
            raise ValueError("every target in ts equals ignore_label "
                             f"({self.ignore_label}); the mean loss is undefined")
        self._cache = (probs, labels.reshape(N * T), kept, (N, T, V))
        return loss / kept

    def backward(self, dout=1):
        """-> d xs (N,T,V): dout * (softmax - onehot) / kept, zero where ignored."""
        probs, labels, kept, shape = checks.forward_done(self, self._cache)
        if isinstance(dout, (bool, np.bool_)) or not isinstance(dout, (int, float, np.number)) \
                or not np.isfinite(dout):
            raise TypeError("dout must be a finite scalar (the gradient of the loss), got "
                            f"{dout!r}")
        dxs = np.empty(shape, probs.dtype)
        scale = probs.dtype.type(dout / kept)
        softmax_cross_entropy_backward(dxs.reshape(probs.shape), probs, labels,
                                       self.ignore_label, scale, chunks())
        return dxs


class TimeAttention:
    """Every decoder step attends over all encoder steps (no params).

    ``attention_weights`` holds the last forward's weights: a list of Td arrays (N,Ts).
    """

    def __init__(self):
        self.params, self.grads = [], []
        self.attention_weights = None
        self._cache = None
        self._work = Workspace()

    def forward(self, hs_enc, hs_dec):
        """hs_enc (N,Ts,H), hs_dec (N,Td,H) -> contexts (N,Td,H)."""
        hs_enc = checks.floats("hs_enc", hs_enc, None, (None, None, None))
        N, Ts, H = hs_enc.shape
        hs_dec = checks.floats("hs_dec", hs_dec, hs_enc.dtype, (N, None, H), "hs_enc")
        Td = hs_dec.shape[1]
        contexts = np.empty((N, Td, H), hs_enc.dtype)
        weights = np.empty((N, Td, Ts), hs_enc.dtype)
        attention_forward(contexts, weights, hs_enc, hs_dec, chunks())
        self.attention_weights = [weights[:, t] for t in range(Td)]
        self._cache = (hs_enc, hs_dec, weights)
        return contexts

    def backward(self, dout):
        """dout (N,Td,H) -> (dhs_enc (N,Ts,H), dhs_dec (N,Td,H))."""
        hs_enc, hs_dec, weights = checks.forward_done(self, self._cache)
        N, Td, Ts = weights.shape
        dout = checks.floats("dout", dout, hs_enc.dtype, hs_dec.shape, "hs_enc")
        dhs_enc = np.empty_like(hs_enc)
        dhs_dec = np.empty_like(hs_dec)
        n_chunks = chunks()
        dscores = self._work.get("dscores", (n_chunks, Td, Ts), hs_enc.dtype)
        attention_backward(dhs_enc, dhs_dec, dscores, dout, weights, hs_enc, hs_dec, n_chunks)
        return dhs_enc, dhs_dec
