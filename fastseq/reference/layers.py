"""Plain NumPy twin of the book's time layers, written from the equations in DESIGN.md.

Slow on purpose: the recurrent layers loop over time steps in Python, the book's own
algorithm (`A = x_t @ Wx + h @ Wh + b` at every step, nothing hoisted), so this module is the
test oracle and the benchmark baseline. It shares no code with fastseq's compiled path.

Shapes:
    N  batch size
    T  time steps (Ts encoder steps, Td decoder steps for attention)
    D  input width (word vector size)
    H  hidden width
    V  vocabulary size
    M  output width of an affine layer

dtype follows the weights: float32 like the book's 'f', or float64 for gradient checks.
Every layer has `params` and `grads` (lists built once; grads are written in place).
"""
import numpy as np

__all__ = [
    "sigmoid",
    "softmax",
    "TimeEmbedding",
    "TimeLSTM",
    "TimeAffine",
    "TimeSoftmaxWithLoss",
    "TimeAttention",
]


def sigmoid(x):
    """Logistic function, elementwise: 1 / (1 + exp(-x))."""
    return 1 / (1 + np.exp(-x))


def softmax(x):
    """Softmax over the last axis, with the row maximum subtracted first: x (..., K) -> (..., K)."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class TimeEmbedding:
    """Word embedding for every time step: out[:, t] = W[xs[:, t]].

    params: [W (V, D)]
    """

    def __init__(self, W):
        self.params = [W]
        self.grads = [np.zeros_like(W)]
        self.xs = None

    def forward(self, xs):
        """xs int (N, T) -> out (N, T, D)."""
        (W,) = self.params
        N, T = xs.shape
        out = np.empty((N, T, W.shape[1]), dtype=W.dtype)
        for t in range(T):
            out[:, t, :] = W[xs[:, t]]
        self.xs = xs
        return out

    def backward(self, dout):
        """dout (N, T, D) -> None; writes dW (V, D), adding up rows of repeated ids."""
        (dW,) = self.grads
        dW[...] = 0
        for t in range(self.xs.shape[1]):
            # forward: out[:, t, :] = W[xs[:, t]]
            np.add.at(dW, self.xs[:, t], dout[:, t, :])
        return None


class TimeLSTM:
    """LSTM over T steps, gate columns in the book's order f, g, i, o.

    params: [Wx (D, 4H), Wh (H, 4H), b (4H,)]
    Per step:  A = x_t @ Wx + h @ Wh + b                                  (N, 4H)
               f = sigmoid(A[:, 0:H])     g = tanh(A[:, H:2H])
               i = sigmoid(A[:, 2H:3H])   o = sigmoid(A[:, 3H:4H])
               c = f * c_prev + g * i      h = o * tanh(c)
    State: `h`, `c` (N, H) after the last forward (None before); with stateful=False, or while
    h / c is None, a forward starts from zeros. `dh` (N, H) is the gradient with respect to the
    initial h of the last forward, set by backward.
    """

    def __init__(self, Wx, Wh, b, stateful=False):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.stateful = stateful
        self.h = None
        self.c = None
        self.dh = None
        self.cache = None

    def set_state(self, h, c=None):
        """h (N, H), c (N, H) or None (then the next stateful forward starts c at zeros)."""
        self.h, self.c = h, c

    def reset_state(self):
        self.h, self.c = None, None

    def forward(self, xs):
        """xs (N, T, D) -> hs (N, T, H)."""
        Wx, Wh, b = self.params
        N, T, D = xs.shape
        H = Wh.shape[0]
        if not self.stateful or self.h is None:
            self.h = np.zeros((N, H), dtype=Wh.dtype)
        if not self.stateful or self.c is None:
            self.c = np.zeros((N, H), dtype=Wh.dtype)

        hs = np.empty((N, T, H), dtype=Wh.dtype)
        h, c = self.h, self.c  # (N, H) each
        steps = []
        for t in range(T):
            x = xs[:, t, :]  # (N, D)
            A = x @ Wx + h @ Wh + b  # (N, 4H)
            f = sigmoid(A[:, :H])
            g = np.tanh(A[:, H : 2 * H])
            i = sigmoid(A[:, 2 * H : 3 * H])
            o = sigmoid(A[:, 3 * H :])
            c_next = f * c + g * i
            tanh_c = np.tanh(c_next)
            h_next = o * tanh_c
            steps.append((x, h, c, f, g, i, o, tanh_c))
            hs[:, t, :] = h_next
            h, c = h_next, c_next
        self.h, self.c = h, c
        self.cache = steps
        return hs

    def backward(self, dhs):
        """dhs (N, T, H) -> dxs (N, T, D); writes dWx, dWh, db and sets self.dh (N, H)."""
        Wx, Wh, b = self.params
        N, T, H = dhs.shape
        D = Wx.shape[0]
        dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)
        dxs = np.empty((N, T, D), dtype=Wx.dtype)
        dh = np.zeros((N, H), dtype=Wh.dtype)  # flows from step t+1 back into step t
        dc = np.zeros((N, H), dtype=Wh.dtype)
        for t in reversed(range(T)):
            x, h_prev, c_prev, f, g, i, o, tanh_c = self.cache[t]
            dh_t = dhs[:, t, :] + dh
            # h = o * tanh(c)
            do = dh_t * tanh_c
            dc_t = dc + dh_t * o * (1 - tanh_c**2)
            # c = f * c_prev + g * i
            df = dc_t * c_prev
            dg = dc_t * i
            di = dc_t * g
            dc = dc_t * f
            # f, i, o = sigmoid(A_f), sigmoid(A_i), sigmoid(A_o);  g = tanh(A_g)
            dA = np.hstack((df * f * (1 - f), dg * (1 - g**2), di * i * (1 - i), do * o * (1 - o)))
            # A = x @ Wx + h_prev @ Wh + b
            dWx += x.T @ dA
            dWh += h_prev.T @ dA
            db += dA.sum(axis=0)
            dxs[:, t, :] = dA @ Wx.T
            dh = dA @ Wh.T
        self.grads[0][...] = dWx
        self.grads[1][...] = dWh
        self.grads[2][...] = db
        self.dh = dh
        return dxs


class TimeAffine:
    """The same affine map at every time step: out = x @ W + b.

    params: [W (D, M), b (M,)]
    """

    def __init__(self, W, b):
        self.params = [W, b]
        self.grads = [np.zeros_like(W), np.zeros_like(b)]
        self.x = None

    def forward(self, x):
        """x (N, T, D) -> out (N, T, M)."""
        W, b = self.params
        N, T, D = x.shape
        out = x.reshape(N * T, D) @ W + b
        self.x = x
        return out.reshape(N, T, -1)

    def backward(self, dout):
        """dout (N, T, M) -> dx (N, T, D); writes dW, db."""
        W, b = self.params
        N, T, D = self.x.shape
        rx = self.x.reshape(N * T, D)
        dout = dout.reshape(N * T, -1)
        # out = rx @ W + b
        self.grads[0][...] = rx.T @ dout
        self.grads[1][...] = dout.sum(axis=0)
        dx = dout @ W.T
        return dx.reshape(N, T, D)


class TimeSoftmaxWithLoss:
    """Softmax + cross-entropy at every time step, averaged over the targets that count.

    No params. Targets equal to `ignore_label` (-1) add nothing to the loss or the gradient and
    are left out of the mean. The log-softmax subtracts the row maximum (log-sum-exp), so the
    loss is finite for any finite scores.
    """

    def __init__(self):
        self.params, self.grads = [], []
        self.ignore_label = -1
        self.cache = None

    def forward(self, xs, ts):
        """xs (N, T, V) scores, ts int (N, T) or one-hot (N, T, V) -> scalar mean loss.

        loss = -sum over kept (n, t) of log softmax(xs[n, t])[ts[n, t]] / (number kept)
        """
        N, T, V = xs.shape
        if ts.ndim == 3:  # one-hot, as in the book: the label is the argmax
            ts = ts.argmax(axis=2)
        xs = xs.reshape(N * T, V)
        ts = ts.reshape(N * T)
        mask = ts != self.ignore_label  # (N*T,)
        safe_ts = np.where(mask, ts, 0)  # ignored rows point at column 0, then get masked

        z = xs - xs.max(axis=1, keepdims=True)
        log_ys = z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # (N*T, V)
        log_p = log_ys[np.arange(N * T), safe_ts]  # (N*T,)
        count = max(int(mask.sum()), 1)  # all ignored: loss 0 and zero gradient
        loss = -np.sum(np.where(mask, log_p, 0)) / count

        self.cache = (safe_ts, mask, np.exp(log_ys), count, (N, T, V))
        return loss

    def backward(self, dout=1):
        """dout scalar -> dxs (N, T, V), zero rows where the target is ignored."""
        ts, mask, ys, count, (N, T, V) = self.cache
        # loss = -sum(mask * log softmax(xs)[ts]) / count
        dxs = ys.copy()  # never edit the saved ys: backward stays repeatable
        dxs[np.arange(N * T), ts] -= 1
        dxs *= mask[:, None]
        dxs *= dout / count
        return dxs.reshape(N, T, V)


class TimeAttention:
    """Dot-product attention of every decoder step over all encoder steps.

    No params. For decoder step t:
        s = hs_enc[:, s] . hs_dec[:, t]          (N, Ts)  scores
        a = softmax(s) over the encoder steps    (N, Ts)  weights
        c = sum_s a[:, s] * hs_enc[:, s]         (N, H)   context
    `attention_weights` keeps the Td weight arrays (N, Ts) of the last forward.
    """

    def __init__(self):
        self.params, self.grads = [], []
        self.attention_weights = None
        self.cache = None

    def forward(self, hs_enc, hs_dec):
        """hs_enc (N, Ts, H), hs_dec (N, Td, H) -> contexts (N, Td, H)."""
        N, Ts, H = hs_enc.shape
        Td = hs_dec.shape[1]
        cs = np.empty((N, Td, H), dtype=hs_dec.dtype)
        weights = []
        for t in range(Td):
            h = hs_dec[:, t, :]  # (N, H)
            s = np.sum(hs_enc * h[:, None, :], axis=2)  # (N, Ts)
            a = softmax(s)  # (N, Ts)
            cs[:, t, :] = np.sum(hs_enc * a[:, :, None], axis=1)
            weights.append(a)
        self.attention_weights = list(weights)
        self.cache = (hs_enc, hs_dec, weights)
        return cs

    def backward(self, dcs):
        """dcs (N, Td, H) -> (dhs_enc (N, Ts, H), dhs_dec (N, Td, H))."""
        hs_enc, hs_dec, weights = self.cache
        N, Td, H = dcs.shape
        dhs_enc = np.zeros(hs_enc.shape, dtype=dcs.dtype)
        dhs_dec = np.empty(hs_dec.shape, dtype=dcs.dtype)
        for t in range(Td):
            h = hs_dec[:, t, :]  # (N, H)
            a = weights[t]  # (N, Ts)
            dc = dcs[:, t, :]  # (N, H)
            # c = sum_s a[:, s] * hs_enc[:, s]
            da = np.sum(hs_enc * dc[:, None, :], axis=2)  # (N, Ts)
            dhs_enc += a[:, :, None] * dc[:, None, :]
            # a = softmax(s)
            ds = a * (da - np.sum(a * da, axis=1, keepdims=True))  # (N, Ts)
            # s[:, s] = hs_enc[:, s] . h
            dhs_enc += ds[:, :, None] * h[:, None, :]
            dhs_dec[:, t, :] = np.sum(ds[:, :, None] * hs_enc, axis=1)
        return dhs_enc, dhs_dec
