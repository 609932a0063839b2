"""The book's seq2seq models (ch. 7-8), built from fastseq's layers.

N batch, T time steps (Ts encoder, Td decoder), V vocabulary, D word-vector width, H hidden width.

Same constructor arguments, params order and initial weights as the book: weights are drawn
with the legacy global ``np.random.randn`` in the book's order and scale, divided in float64,
then cast (``(randn(V, D) / 100).astype('f')``), so after ``np.random.seed(s)`` a model starts
from the book's weights; biases are zeros; an encoder draws before its decoder. ``dtype``
(float32 by default, float64 for gradient checks) is an addition. A model's params and grads
are its layers' arrays (the same objects), concatenated.

``generate`` runs the whole greedy loop in one compiled call (``fastseq.kernels.decode``) and
returns a list of ints for one question (N=1, as the book) or an (N, sample_size) int array.
"""

import pickle

import numpy as np

from . import _checks as checks
from ._files import atomic_write, load_arrays
from .kernels.decode import greedy_generate
from .layers import TimeAffine, TimeAttention, TimeEmbedding, TimeLSTM, TimeSoftmaxWithLoss
from .threads import chunks


def _sizes(vocab_size, wordvec_size, hidden_size, dtype):
    for name, value in (("vocab_size", vocab_size), ("wordvec_size", wordvec_size),
                        ("hidden_size", hidden_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if np.dtype(dtype) not in checks.FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    return int(vocab_size), int(wordvec_size), int(hidden_size), np.dtype(dtype)


def _randn(rows, cols, scale, dtype):
    return (np.random.randn(rows, cols) / scale).astype(dtype)


def _collect(obj, *parts):
    """obj.params / obj.grads: those of its parts (layers or encoder and decoder) in order, and
    obj._sources: the (layer, index) each entry comes from, for _check_shared."""
    obj.params, obj.grads, obj._sources = [], [], []
    for part in parts:
        obj.params += part.params
        obj.grads += part.grads
        obj._sources += (getattr(part, "_sources", None)
                         or [(part, i) for i in range(len(part.params))])


def _check_shared(model):
    """A model's params and grads must be the very arrays its layers use: an entry rebound in
    either list (instead of updated in place) would leave the optimizer, load_params or
    save_params working on an array the layers never read, silently."""
    name = type(model).__name__
    for kind, mine in (("params", model.params), ("grads", model.grads)):
        if len(mine) != len(model._sources):
            raise ValueError(f"{name}.{kind} holds {len(mine)} arrays but its layers use "
                             f"{len(model._sources)}; never add to or remove from {kind}")
        for i, (a, (layer, j)) in enumerate(zip(mine, model._sources)):
            theirs = getattr(layer, kind)
            if j >= len(theirs) or a is not theirs[j]:
                raise ValueError(f"{name}.{kind}[{i}] is no longer the array its layer uses; "
                                 f"update {kind} in place ({kind}[{i}][...] = new) instead of "
                                 "replacing the array")


class Encoder:
    """Embedding + LSTM; forward returns the last hidden state (N,H)."""

    def __init__(self, vocab_size, wordvec_size, hidden_size, dtype=np.float32):
        V, D, H, dtype = _sizes(vocab_size, wordvec_size, hidden_size, dtype)
        embed_W = _randn(V, D, 100, dtype)
        lstm_Wx = _randn(D, 4 * H, np.sqrt(D), dtype)
        lstm_Wh = _randn(H, 4 * H, np.sqrt(H), dtype)
        lstm_b = np.zeros(4 * H, dtype)
        self.embed = TimeEmbedding(embed_W)
        self.lstm = TimeLSTM(lstm_Wx, lstm_Wh, lstm_b, stateful=False)
        _collect(self, self.embed, self.lstm)
        self.hs = None

    def forward(self, xs):
        """xs (N,T) ids -> h (N,H), the last step's hidden state."""
        hs = self.lstm.forward(xs, embed=self.embed)
        self.hs = hs
        return hs[:, -1, :]

    def backward(self, dh):
        """dh (N,H), fed into the last step only; writes the grads (the embedding is folded
        into the LSTM, so there is no gradient of embedded inputs to return: None)."""
        hs = checks.forward_done(self, self.hs)
        dhs = np.zeros_like(hs)
        dhs[:, -1, :] = checks.floats("dh", dh, hs.dtype, (hs.shape[0], hs.shape[2]))
        self.lstm.backward(dhs)


class Decoder:
    """Embedding + stateful LSTM started from the encoder's h + affine; returns scores."""

    def __init__(self, vocab_size, wordvec_size, hidden_size, dtype=np.float32):
        V, D, H, dtype = _sizes(vocab_size, wordvec_size, hidden_size, dtype)
        embed_W = _randn(V, D, 100, dtype)
        lstm_Wx = _randn(D, 4 * H, np.sqrt(D), dtype)
        lstm_Wh = _randn(H, 4 * H, np.sqrt(H), dtype)
        lstm_b = np.zeros(4 * H, dtype)
        affine_W = _randn(H, V, np.sqrt(H), dtype)
        affine_b = np.zeros(V, dtype)
        self.embed = TimeEmbedding(embed_W)
        self.lstm = TimeLSTM(lstm_Wx, lstm_Wh, lstm_b, stateful=True)
        self.affine = TimeAffine(affine_W, affine_b)
        _collect(self, self.embed, self.lstm, self.affine)

    def forward(self, xs, h):
        """xs (N,T) ids, h (N,H) -> scores (N,T,V)."""
        self.lstm.set_state(h)
        return self.affine.forward(self.lstm.forward(xs, embed=self.embed))

    def backward(self, dscore):
        """dscore (N,T,V) -> dh (N,H)."""
        self.lstm.backward(self.affine.backward(dscore))
        return self.lstm.dh

    def generate(self, h, start_id, sample_size):
        """Greedy ids after start_id, starting from state h (N,H)."""
        return _generate(self, start_id, sample_size, state=("h", h))


class PeekyDecoder:
    """Decoder that feeds the encoder's h to every step: the LSTM sees concat([h, embed]) and
    the affine concat([h, lstm out]) (h first). h's share of both is computed once per batch,
    not once per step (``TimeLSTM`` / ``TimeAffine`` ``const``)."""

    def __init__(self, vocab_size, wordvec_size, hidden_size, dtype=np.float32):
        V, D, H, dtype = _sizes(vocab_size, wordvec_size, hidden_size, dtype)
        embed_W = _randn(V, D, 100, dtype)
        lstm_Wx = _randn(H + D, 4 * H, np.sqrt(H + D), dtype)
        lstm_Wh = _randn(H, 4 * H, np.sqrt(H), dtype)
        lstm_b = np.zeros(4 * H, dtype)
        affine_W = _randn(H + H, V, np.sqrt(H + H), dtype)
        affine_b = np.zeros(V, dtype)
        self.embed = TimeEmbedding(embed_W)
        self.lstm = TimeLSTM(lstm_Wx, lstm_Wh, lstm_b, stateful=True)
        self.affine = TimeAffine(affine_W, affine_b)
        _collect(self, self.embed, self.lstm, self.affine)

    def forward(self, xs, h):
        """xs (N,T) ids, h (N,H) -> scores (N,T,V)."""
        self.lstm.set_state(h)
        out = self.lstm.forward(xs, const=h, embed=self.embed)
        return self.affine.forward(out, const=h)

    def backward(self, dscore):
        """dscore (N,T,V) -> dh (N,H): the LSTM's dh plus h's gradient through every step of
        both concatenations."""
        self.lstm.backward(self.affine.backward(dscore))
        return self.lstm.dh + self.lstm.dconst + self.affine.dconst

    def generate(self, h, start_id, sample_size):
        """Greedy ids after start_id, with h (N,H) as initial state and peeked at every step."""
        return _generate(self, start_id, sample_size, state=("h", h))


class AttentionEncoder(Encoder):
    """Encoder whose forward returns every step's hidden state (N,T,H)."""

    def forward(self, xs):
        """xs (N,T) ids -> hs (N,T,H)."""
        self.hs = self.lstm.forward(xs, embed=self.embed)
        return self.hs

    def backward(self, dhs):
        """dhs (N,T,H); writes the grads (returns None, as Encoder.backward)."""
        self.lstm.backward(dhs)


class AttentionDecoder:
    """Decoder with attention over all encoder states: state from enc_hs[:, -1]; the affine
    sees concat([context, lstm out]) (context first, never materialised)."""

    def __init__(self, vocab_size, wordvec_size, hidden_size, dtype=np.float32):
        V, D, H, dtype = _sizes(vocab_size, wordvec_size, hidden_size, dtype)
        embed_W = _randn(V, D, 100, dtype)
        lstm_Wx = _randn(D, 4 * H, np.sqrt(D), dtype)
        lstm_Wh = _randn(H, 4 * H, np.sqrt(H), dtype)
        lstm_b = np.zeros(4 * H, dtype)
        affine_W = _randn(2 * H, V, np.sqrt(2 * H), dtype)
        affine_b = np.zeros(V, dtype)
        self.embed = TimeEmbedding(embed_W)
        self.lstm = TimeLSTM(lstm_Wx, lstm_Wh, lstm_b, stateful=True)
        self.attention = TimeAttention()
        self.affine = TimeAffine(affine_W, affine_b)
        _collect(self, self.embed, self.lstm, self.attention, self.affine)

    @property
    def attention_weights(self):
        """Attention weights of the last forward or generate: one (N,Ts) array per step."""
        return self.attention.attention_weights

    def forward(self, xs, enc_hs):
        """xs (N,Td) ids, enc_hs (N,Ts,H) -> scores (N,Td,V)."""
        H = self.lstm.params[1].shape[0]
        enc_hs = checks.floats("enc_hs", enc_hs, self.lstm.dtype, (None, None, H))
        self.lstm.set_state(enc_hs[:, -1])
        dec_hs = self.lstm.forward(xs, embed=self.embed)
        contexts = self.attention.forward(enc_hs, dec_hs)
        return self.affine.forward((contexts, dec_hs))

    def backward(self, dscore):
        """dscore (N,Td,V) -> d enc_hs (N,Ts,H), the LSTM's dh added to the last step."""
        dcontexts, ddec_hs = self.affine.backward(dscore)
        denc_hs, ddec_hs_attention = self.attention.backward(dcontexts)
        self.lstm.backward(ddec_hs + ddec_hs_attention)
        denc_hs[:, -1] += self.lstm.dh
        return denc_hs

    def generate(self, enc_hs, start_id, sample_size):
        """Greedy ids after start_id, attending over enc_hs (N,Ts,H)."""
        return _generate(self, start_id, sample_size, state=("enc_hs", enc_hs))


def _decoder_params(decoder):
    """The params of a decoder's embedding, LSTM and affine, checked (still the arrays the
    kernels may index) before generate computes anything from them."""
    return tuple(layer._checked_params(with_grads=False)
                 for layer in (decoder.embed, decoder.lstm, decoder.affine))


def _generate(decoder, start_id, sample_size, state=None, encoder=None, xs=None):
    """Check the arguments, run the compiled greedy loop, return the book's result type. The
    decoder starts from encoder's encoding of the ids xs, or from state = (name, array): h (N,H),
    or for attention the encoder's states enc_hs (N,Ts,H)."""
    (W_embed,), (Wx, Wh, b), (W, b_out) = _decoder_params(decoder)
    V, H, dtype = W_embed.shape[0], Wh.shape[0], Wh.dtype
    attention = isinstance(decoder, AttentionDecoder)
    if isinstance(start_id, bool) or not isinstance(start_id, (int, np.integer)) \
            or not 0 <= start_id < V:
        raise ValueError(f"start_id must be an integer id in [0, {V}), got {start_id!r}")
    if isinstance(sample_size, bool) or not isinstance(sample_size, (int, np.integer)) \
            or sample_size < 0:
        raise ValueError(f"sample_size must be a non-negative integer, got {sample_size!r}")
    if encoder is not None:
        (W_enc,) = encoder.embed._checked_params(with_grads=False)
        encoder_lstm = encoder.lstm._checked_params(with_grads=False)
        xs = checks.token_ids("xs", xs, W_enc.shape[0])
        N, Ts = xs.shape
        encoder_weights, enc_hs = (W_enc, *encoder_lstm), np.empty((0, 0, H), dtype)
    else:
        name, value = state
        enc_hs = checks.floats(name, value, dtype, (None, None, H) if attention else (None, H))
        if not attention:
            enc_hs = enc_hs[:, None]
        N, Ts = enc_hs.shape[:2]
        xs = np.empty((N, 0), np.int64)  # no question: the kernel starts from enc_hs
        encoder_weights = (W_embed, Wx, Wh, b)  # an encoder's types; not read without xs
    ids = np.empty((N, sample_size), np.int64)
    attention_weights = np.empty((N, sample_size, Ts if attention else 0), dtype)
    # no more chunks than rows: one question is a single chunk (with two, one was empty)
    greedy_generate(ids, attention_weights, int(start_id), xs, encoder_weights, enc_hs,
                    (W_embed, Wx, Wh, b, W, b_out), attention, min(chunks(), N))
    if attention:
        decoder.attention.attention_weights = [attention_weights[:, s]
                                               for s in range(sample_size)]
    return ids[0].tolist() if N == 1 else ids


class BaseModel:
    """save_params / load_params in the book's format: a pickle of the params list as float16."""

    def save_params(self, file_name=None):
        """Write the params (as float16) to file_name, default '<ClassName>.pkl', atomically."""
        file_name = file_name or type(self).__name__ + ".pkl"
        _check_shared(self)
        arrays = [p.astype(np.float16) for p in self.params]
        with atomic_write(file_name, "wb") as f:
            pickle.dump(arrays, f)

    def load_params(self, file_name=None):
        """Read a params file (the book's or fastseq's) into the params, in place, cast to the
        model's dtype. The model is left unchanged if the file does not fit it."""
        file_name = file_name or type(self).__name__ + ".pkl"
        _check_shared(self)
        arrays = load_arrays(file_name)
        if len(arrays) != len(self.params):
            raise ValueError(f"{file_name!r} holds {len(arrays)} arrays but {type(self).__name__} "
                             f"has {len(self.params)} params; was it saved from another model "
                             "or with other sizes?")
        values = []
        for i, (p, a) in enumerate(zip(self.params, arrays)):
            if not isinstance(a, np.ndarray) or a.shape != p.shape:
                got = a.shape if isinstance(a, np.ndarray) else type(a).__name__
                raise ValueError(f"{file_name!r}: array {i} has shape {got}, but params[{i}] is "
                                 f"{p.shape}; was it saved with other sizes?")
            if a.dtype.kind not in "fiu":
                raise ValueError(f"{file_name!r}: array {i} holds {a.dtype} values, not real "
                                 "numbers")
            with np.errstate(over="ignore", invalid="ignore"):
                value = a.astype(p.dtype)
            if not np.isfinite(value).all():
                raise ValueError(f"{file_name!r}: array {i} holds NaN or inf, or values too "
                                 f"large for {p.dtype}")
            values.append(value)
        for p, value in zip(self.params, values):
            p[...] = value


class Seq2seq(BaseModel):
    """Encoder + Decoder + softmax cross-entropy."""

    encoder_class = Encoder
    decoder_class = Decoder

    def __init__(self, vocab_size, wordvec_size, hidden_size, dtype=np.float32):
        args = (vocab_size, wordvec_size, hidden_size, dtype)
        self.encoder = self.encoder_class(*args)
        self.decoder = self.decoder_class(*args)
        self.softmax = TimeSoftmaxWithLoss()
        _collect(self, self.encoder, self.decoder)

    def forward(self, xs, ts):
        """xs (N,Ts) question ids, ts (N,Td+1) answer ids starting with the start symbol ->
        mean loss of predicting ts[:, 1:] from ts[:, :-1]. As in the book, the last column
        (a target only, never an input) may hold ignore_label (-1)."""
        _check_shared(self)
        V = self.decoder.embed.params[0].shape[0]
        xs = checks.token_ids("xs", xs, V)
        ignore = self.softmax.ignore_label
        ts = checks.token_ids("ts", ts, V, (xs.shape[0], None), ignore)
        if ts.shape[1] < 2:
            raise ValueError(f"ts must have at least 2 columns (the start symbol and one "
                             f"target), got shape {ts.shape}")
        if (ts[:, :-1] == ignore).any():
            raise ValueError(f"ts[:, :-1] (the decoder's input) holds ignore_label ({ignore}); "
                             "only ts[:, -1], a target and never an input, may")
        h = self.encoder.forward(xs)
        score = self.decoder.forward(ts[:, :-1], h)
        return self.softmax.forward(score, ts[:, 1:])

    def backward(self, dout=1):
        dh = self.decoder.backward(self.softmax.backward(dout))
        self.encoder.backward(dh)

    def generate(self, xs, start_id, sample_size):
        """xs (N,Ts) question ids -> greedy answer ids (a list for N=1, else (N, sample_size))."""
        _check_shared(self)
        return _generate(self.decoder, start_id, sample_size, encoder=self.encoder, xs=xs)


class PeekySeq2seq(Seq2seq):
    """Seq2seq whose decoder peeks at the encoder's state at every step."""

    decoder_class = PeekyDecoder


class AttentionSeq2seq(Seq2seq):
    """Seq2seq with attention over all encoder states."""

    encoder_class = AttentionEncoder
    decoder_class = AttentionDecoder
