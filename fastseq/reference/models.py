"""Plain NumPy twin of the book's seq2seq models (ch. 7 seq2seq and peeky, ch. 8 attention).

Built from the layers in `fastseq.reference.layers`, with the book's structure and the initial
weights of DESIGN.md: drawn with the legacy global `np.random.randn` in a fixed order, divided
in float64, then cast (`(randn(V, D) / 100).astype('f')`), so that after `np.random.seed(s)` a
model starts from the book's weights bit for bit. Biases are zeros; the encoder draws first.

Shapes:
    N  batch size
    T  time steps (Ts encoder steps, Td decoder steps)
    D  word vector size (wordvec_size)
    H  hidden width (hidden_size)
    V  vocabulary size (vocab_size)

A model's `params` / `grads` are its children's lists concatenated: the same array objects.
"""
import os
import pickle

import numpy as np

from .layers import TimeAffine, TimeAttention, TimeEmbedding, TimeLSTM, TimeSoftmaxWithLoss

__all__ = [
    "BaseModel",
    "Encoder",
    "Decoder",
    "Seq2seq",
    "PeekyDecoder",
    "PeekySeq2seq",
    "AttentionEncoder",
    "AttentionDecoder",
    "AttentionSeq2seq",
]


def _greedy_decode(step, N, start_id, sample_size):
    """Feed start_id, then each step's argmax id back in, sample_size times.

    step: ids int (N, 1) -> scores (N, 1, V), advancing the decoder's state by one step.
    Returns a list of Python ints when N == 1 (as the book does), else int64 (N, sample_size).
    """
    sampled = np.empty((N, sample_size), dtype=np.int64)
    ids = np.full((N, 1), start_id, dtype=np.int64)
    for t in range(sample_size):
        score = step(ids)  # (N, 1, V)
        ids = score[:, 0, :].argmax(axis=1).reshape(N, 1)
        sampled[:, t] = ids[:, 0]
    if N == 1:
        return [int(i) for i in sampled[0]]
    return sampled


class Encoder:
    """Embedding + LSTM (not stateful); forward returns the last hidden state.

    params: [embed W (V, D), Wx (D, 4H), Wh (H, 4H), b (4H,)]
    """

    def __init__(self, vocab_size, wordvec_size, hidden_size, dtype=np.float32):
        V, D, H = vocab_size, wordvec_size, hidden_size
        rn = np.random.randn
        embed_W = (rn(V, D) / 100).astype(dtype)
        lstm_Wx = (rn(D, 4 * H) / np.sqrt(D)).astype(dtype)
        lstm_Wh = (rn(H, 4 * H) / np.sqrt(H)).astype(dtype)
        lstm_b = np.zeros(4 * H).astype(dtype)

        self.embed = TimeEmbedding(embed_W)
        self.lstm = TimeLSTM(lstm_Wx, lstm_Wh, lstm_b, stateful=False)
        self.params = self.embed.params + self.lstm.params
        self.grads = self.embed.grads + self.lstm.grads
        self.hs = None

    def forward(self, xs):
        """xs int (N, T) -> h (N, H), the hidden state after the last step."""
        out = self.embed.forward(xs)  # (N, T, D)
        hs = self.lstm.forward(out)  # (N, T, H)
        self.hs = hs
        return hs[:, -1, :]

    def backward(self, dh):
        """dh (N, H) -> None; writes the grads."""
        # h = hs[:, -1, :]: only the last step receives a gradient
        dhs = np.zeros_like(self.hs)
        dhs[:, -1, :] = dh
        dout = self.lstm.backward(dhs)
        return self.embed.backward(dout)


class Decoder:
    """Embedding + stateful LSTM started from the encoder's h + affine to scores.

    params: [embed W (V, D), Wx (D, 4H), Wh (H, 4H), b (4H,), affine W (H, V), affine b (V,)]
    """

    def __init__(self, vocab_size, wordvec_size, hidden_size, dtype=np.float32):
        V, D, H = vocab_size, wordvec_size, hidden_size
        rn = np.random.randn
        embed_W = (rn(V, D) / 100).astype(dtype)
        lstm_Wx = (rn(D, 4 * H) / np.sqrt(D)).astype(dtype)
        lstm_Wh = (rn(H, 4 * H) / np.sqrt(H)).astype(dtype)
        lstm_b = np.zeros(4 * H).astype(dtype)
        affine_W = (rn(H, V) / np.sqrt(H)).astype(dtype)
        affine_b = np.zeros(V).astype(dtype)

        self.embed = TimeEmbedding(embed_W)
        self.lstm = TimeLSTM(lstm_Wx, lstm_Wh, lstm_b, stateful=True)
        self.affine = TimeAffine(affine_W, affine_b)
        self.params = self.embed.params + self.lstm.params + self.affine.params
        self.grads = self.embed.grads + self.lstm.grads + self.affine.grads

    def forward(self, xs, h):
        """xs int (N, T), h (N, H) -> scores (N, T, V); the LSTM starts from (h, zeros)."""
        self.lstm.set_state(h)
        out = self.embed.forward(xs)  # (N, T, D)
        out = self.lstm.forward(out)  # (N, T, H)
        return self.affine.forward(out)  # (N, T, V)

    def backward(self, dscore):
        """dscore (N, T, V) -> dh (N, H); writes the grads."""
        dout = self.affine.backward(dscore)
        dout = self.lstm.backward(dout)
        self.embed.backward(dout)
        return self.lstm.dh

    def generate(self, h, start_id, sample_size):
        """h (N, H) -> greedy ids: list of ints for N == 1, else int64 (N, sample_size)."""
        self.lstm.set_state(h)

        def step(ids):
            out = self.embed.forward(ids)  # (N, 1, D)
            out = self.lstm.forward(out)  # (N, 1, H)
            return self.affine.forward(out)  # (N, 1, V)

        return _greedy_decode(step, h.shape[0], start_id, sample_size)


class PeekyDecoder:
    """Decoder that feeds the encoder's h to every step of the LSTM and of the affine layer.

    LSTM input concat([h, embed], axis=2), affine input concat([h, lstm out], axis=2), h first.
    params: [embed W (V, D), Wx (H+D, 4H), Wh (H, 4H), b (4H,), affine W (2H, V), affine b (V,)]
    """

    def __init__(self, vocab_size, wordvec_size, hidden_size, dtype=np.float32):
        V, D, H = vocab_size, wordvec_size, hidden_size
        rn = np.random.randn
        embed_W = (rn(V, D) / 100).astype(dtype)
        lstm_Wx = (rn(H + D, 4 * H) / np.sqrt(H + D)).astype(dtype)
        lstm_Wh = (rn(H, 4 * H) / np.sqrt(H)).astype(dtype)
        lstm_b = np.zeros(4 * H).astype(dtype)
        affine_W = (rn(H + H, V) / np.sqrt(H + H)).astype(dtype)
        affine_b = np.zeros(V).astype(dtype)

        self.embed = TimeEmbedding(embed_W)
        self.lstm = TimeLSTM(lstm_Wx, lstm_Wh, lstm_b, stateful=True)
        self.affine = TimeAffine(affine_W, affine_b)
        self.params = self.embed.params + self.lstm.params + self.affine.params
        self.grads = self.embed.grads + self.lstm.grads + self.affine.grads
        self.cache = None

    def forward(self, xs, h):
        """xs int (N, T), h (N, H) -> scores (N, T, V)."""
        N, T = xs.shape
        H = h.shape[1]
        self.lstm.set_state(h)
        hs = np.repeat(h[:, None, :], T, axis=1)  # (N, T, H): h at every step
        out = self.embed.forward(xs)  # (N, T, D)
        out = np.concatenate((hs, out), axis=2)  # (N, T, H+D)
        out = self.lstm.forward(out)  # (N, T, H)
        out = np.concatenate((hs, out), axis=2)  # (N, T, 2H)
        score = self.affine.forward(out)  # (N, T, V)
        self.cache = H
        return score

    def backward(self, dscore):
        """dscore (N, T, V) -> dh (N, H); writes the grads."""
        H = self.cache
        dout = self.affine.backward(dscore)  # (N, T, 2H)
        # out = concat([hs, lstm out], axis=2)
        dhs_affine, dout = dout[:, :, :H], dout[:, :, H:]
        dout = self.lstm.backward(dout)  # (N, T, H+D)
        # out = concat([hs, embed], axis=2)
        dhs_lstm, dembed = dout[:, :, :H], dout[:, :, H:]
        self.embed.backward(dembed)
        # hs = h repeated over T; the LSTM also started from h
        return self.lstm.dh + np.sum(dhs_affine + dhs_lstm, axis=1)

    def generate(self, h, start_id, sample_size):
        """h (N, H) -> greedy ids: list of ints for N == 1, else int64 (N, sample_size)."""
        N, H = h.shape
        self.lstm.set_state(h)
        peeky_h = h.reshape(N, 1, H)

        def step(ids):
            out = self.embed.forward(ids)  # (N, 1, D)
            out = np.concatenate((peeky_h, out), axis=2)  # (N, 1, H+D)
            out = self.lstm.forward(out)  # (N, 1, H)
            out = np.concatenate((peeky_h, out), axis=2)  # (N, 1, 2H)
            return self.affine.forward(out)  # (N, 1, V)

        return _greedy_decode(step, N, start_id, sample_size)


class AttentionEncoder(Encoder):
    """Encoder whose forward returns every hidden state."""

    def forward(self, xs):
        """xs int (N, T) -> hs (N, T, H)."""
        out = self.embed.forward(xs)
        self.hs = self.lstm.forward(out)
        return self.hs

    def backward(self, dhs):
        """dhs (N, T, H) -> None; writes the grads."""
        dout = self.lstm.backward(dhs)
        return self.embed.backward(dout)


class AttentionDecoder:
    """Decoder that attends over the encoder's hidden states at every step.

    LSTM starts from enc_hs[:, -1]; affine input is concat([context, dec_hs], axis=2).
    params: [embed W (V, D), Wx (D, 4H), Wh (H, 4H), b (4H,), affine W (2H, V), affine b (V,)]
    `attention_weights`: the per-step weights (N, Ts) of the last forward or generate.
    """

    def __init__(self, vocab_size, wordvec_size, hidden_size, dtype=np.float32):
        V, D, H = vocab_size, wordvec_size, hidden_size
        rn = np.random.randn
        embed_W = (rn(V, D) / 100).astype(dtype)
        lstm_Wx = (rn(D, 4 * H) / np.sqrt(D)).astype(dtype)
        lstm_Wh = (rn(H, 4 * H) / np.sqrt(H)).astype(dtype)
        lstm_b = np.zeros(4 * H).astype(dtype)
        affine_W = (rn(2 * H, V) / np.sqrt(2 * H)).astype(dtype)
        affine_b = np.zeros(V).astype(dtype)

        self.embed = TimeEmbedding(embed_W)
        self.lstm = TimeLSTM(lstm_Wx, lstm_Wh, lstm_b, stateful=True)
        self.attention = TimeAttention()
        self.affine = TimeAffine(affine_W, affine_b)
        layers = [self.embed, self.lstm, self.attention, self.affine]
        self.params, self.grads = [], []
        for layer in layers:
            self.params += layer.params
            self.grads += layer.grads
        self.attention_weights = None

    def forward(self, xs, enc_hs):
        """xs int (N, Td), enc_hs (N, Ts, H) -> scores (N, Td, V)."""
        self.lstm.set_state(enc_hs[:, -1, :])
        out = self.embed.forward(xs)  # (N, Td, D)
        dec_hs = self.lstm.forward(out)  # (N, Td, H)
        c = self.attention.forward(enc_hs, dec_hs)  # (N, Td, H)
        out = np.concatenate((c, dec_hs), axis=2)  # (N, Td, 2H)
        self.attention_weights = self.attention.attention_weights
        return self.affine.forward(out)

    def backward(self, dscore):
        """dscore (N, Td, V) -> denc_hs (N, Ts, H); writes the grads."""
        dout = self.affine.backward(dscore)  # (N, Td, 2H)
        H = dout.shape[2] // 2
        # out = concat([c, dec_hs], axis=2)
        dc, ddec_hs_affine = dout[:, :, :H], dout[:, :, H:]
        # c = attention(enc_hs, dec_hs)
        denc_hs, ddec_hs_attention = self.attention.backward(dc)
        dout = self.lstm.backward(ddec_hs_affine + ddec_hs_attention)
        # the LSTM started from enc_hs[:, -1]
        denc_hs[:, -1, :] += self.lstm.dh
        self.embed.backward(dout)
        return denc_hs

    def generate(self, enc_hs, start_id, sample_size):
        """enc_hs (N, Ts, H) -> greedy ids: list of ints for N == 1, else int64 (N, sample_size)."""
        self.lstm.set_state(enc_hs[:, -1, :])
        weights = []

        def step(ids):
            out = self.embed.forward(ids)  # (N, 1, D)
            dec_hs = self.lstm.forward(out)  # (N, 1, H)
            c = self.attention.forward(enc_hs, dec_hs)  # (N, 1, H)
            weights.extend(self.attention.attention_weights)
            out = np.concatenate((c, dec_hs), axis=2)  # (N, 1, 2H)
            return self.affine.forward(out)  # (N, 1, V)

        sampled = _greedy_decode(step, enc_hs.shape[0], start_id, sample_size)
        self.attention_weights = weights
        return sampled


class BaseModel:
    """save_params / load_params, file-compatible with the book's (pickle of float16 params)."""

    def save_params(self, file_name=None):
        """Pickle the params cast to float16; default file name `<ClassName>.pkl`."""
        if file_name is None:
            file_name = self.__class__.__name__ + ".pkl"
        params = [p.astype(np.float16) for p in self.params]
        with open(file_name, "wb") as f:
            pickle.dump(params, f)

    def load_params(self, file_name=None):
        """Read a file written by save_params (or the book) and write each param in place."""
        if file_name is None:
            file_name = self.__class__.__name__ + ".pkl"
        if not os.path.exists(file_name):
            raise FileNotFoundError(f"load_params: no file {os.fspath(file_name)!r}")
        with open(file_name, "rb") as f:
            loaded = pickle.load(f)
        if len(loaded) != len(self.params):
            raise ValueError(
                f"load_params: file holds {len(loaded)} arrays, {type(self).__name__} has "
                f"{len(self.params)} params; was it saved from a different model class?"
            )
        for i, (param, value) in enumerate(zip(self.params, loaded)):
            if value.shape != param.shape:
                raise ValueError(
                    f"load_params: params[{i}] has shape {param.shape}, the file has "
                    f"{value.shape}; build the model with the sizes it was saved with"
                )
            param[...] = value.astype(param.dtype)


class Seq2seq(BaseModel):
    """Encoder + Decoder + TimeSoftmaxWithLoss; params = encoder's + decoder's."""

    encoder_class = Encoder
    decoder_class = Decoder

    def __init__(self, vocab_size, wordvec_size, hidden_size, dtype=np.float32):
        sizes = (vocab_size, wordvec_size, hidden_size)
        self.encoder = self.encoder_class(*sizes, dtype=dtype)
        self.decoder = self.decoder_class(*sizes, dtype=dtype)
        self.softmax = TimeSoftmaxWithLoss()
        self.params = self.encoder.params + self.decoder.params
        self.grads = self.encoder.grads + self.decoder.grads

    def forward(self, xs, ts):
        """xs int (N, Ts), ts int (N, Td+1) -> scalar loss.

        The decoder reads ts[:, :-1] and is scored against ts[:, 1:].
        """
        decoder_xs, decoder_ts = ts[:, :-1], ts[:, 1:]
        h = self.encoder.forward(xs)  # (N, H), or (N, Ts, H) for attention
        score = self.decoder.forward(decoder_xs, h)  # (N, Td, V)
        return self.softmax.forward(score, decoder_ts)

    def backward(self, dout=1):
        """dout scalar -> None; writes the grads."""
        dscore = self.softmax.backward(dout)
        dh = self.decoder.backward(dscore)
        return self.encoder.backward(dh)

    def generate(self, xs, start_id, sample_size):
        """xs int (N, Ts) -> greedy ids: list of ints for N == 1, else int64 (N, sample_size)."""
        h = self.encoder.forward(xs)
        return self.decoder.generate(h, start_id, sample_size)


class PeekySeq2seq(Seq2seq):
    """Encoder + PeekyDecoder + TimeSoftmaxWithLoss."""

    decoder_class = PeekyDecoder


class AttentionSeq2seq(Seq2seq):
    """AttentionEncoder + AttentionDecoder + TimeSoftmaxWithLoss."""

    encoder_class = AttentionEncoder
    decoder_class = AttentionDecoder
