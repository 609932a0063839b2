"""Moving models between fastseq and PyTorch (an optional extra: ``pip install 'fastseq[torch]'``).

N batch, Ts question (encoder) steps, Td decoder steps, V vocabulary, D word-vector width,
H hidden width, S sample_size.

``to_torch(model)`` turns a ``Seq2seq``, ``PeekySeq2seq`` or ``AttentionSeq2seq`` into a
``torch.nn.Module`` made of ``nn.Embedding``, ``nn.LSTM(batch_first=True)`` and ``nn.Linear``
that computes the same loss and greedy answers; ``from_torch(module)`` turns it back, with the
same numbers bit for bit. ``lstm_to_torch`` / ``lstm_from_torch`` do the same for one
``TimeLSTM``.

How the book's weights map onto PyTorch's:

- ``TimeLSTM`` Wx (D,4H), Wh (H,4H), b (4H,) with gate columns f, g, i, o  <->  ``nn.LSTM``
  ``weight_ih_l0`` (4H,D) = Wx.T and ``weight_hh_l0`` (4H,H) = Wh.T with gate rows reordered to
  PyTorch's i, f, g, o; ``bias_ih_l0`` = b reordered, ``bias_hh_l0`` zero and frozen
  (``requires_grad=False``) so that the module trains one bias, as the book's. Coming back,
  the two biases are summed, so any ``nn.LSTM`` converts (to the same function up to
  rounding; bit for bit when bias_hh is zero).
- ``TimeAffine`` W (in,out), b  <->  ``nn.Linear`` weight = W.T, bias = b.
- ``TimeEmbedding`` W (V,D)  <->  ``nn.Embedding`` weight = W.

The decoders feed the same concatenations as the book's: peeky's LSTM sees [h, embed] and its
affine [h, lstm out]; attention's affine sees [context, lstm out].

This module imports PyTorch when it is imported; ``import fastseq`` never imports it.
"""

import numpy as np

try:
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError as e:
    raise ImportError(f"fastseq.interop needs PyTorch, an optional extra of fastseq; install it "
                      f"with: pip install 'fastseq[torch]' ({e})") from e

from . import models
from .layers import TimeLSTM

# PyTorch's gate blocks i, f, g, o are the book's blocks 2, 0, 1, 3 (the book orders f, g, i, o)
_TORCH_GATES_FROM_BOOK = [2, 0, 1, 3]
# and the book's f, g, i, o are PyTorch's blocks 1, 2, 0, 3
_BOOK_GATES_FROM_TORCH = [1, 2, 0, 3]
_TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
_NUMPY_DTYPES = {t: n for n, t in _TORCH_DTYPES.items()}


# ------------------------------------------------------------------------------------------
# The PyTorch twins of the book's models
# ------------------------------------------------------------------------------------------


class TorchSeq2seq(nn.Module):
    """PyTorch version of ``fastseq.Seq2seq``: encoder embedding + LSTM, decoder embedding +
    LSTM started from the encoder's last state + affine; mean softmax cross-entropy.

    ``module(xs, ts)``: xs (N,Ts), ts (N,Td+1) ids (tensors or NumPy arrays) -> scalar loss of
    predicting ts[:, 1:] from ts[:, :-1] (targets equal to ``ignore_label`` are left out of the
    mean, as in ``TimeSoftmaxWithLoss``). ``module.generate(xs, start_id, sample_size)`` ->
    greedy ids, an int64 tensor (N, sample_size).
    """

    fastseq_class = models.Seq2seq

    def __init__(self, vocab_size, wordvec_size, hidden_size, dtype=torch.float32):
        super().__init__()
        V, D, H = vocab_size, wordvec_size, hidden_size
        self.vocab_size, self.wordvec_size, self.hidden_size = V, D, H
        self.ignore_label = -1  # TimeSoftmaxWithLoss.ignore_label
        self.encoder_embed = nn.Embedding(V, D, dtype=dtype)
        self.encoder_lstm = _frozen_hh_bias(nn.LSTM(D, H, batch_first=True, dtype=dtype))
        self.decoder_embed = nn.Embedding(V, D, dtype=dtype)
        self.decoder_lstm = _frozen_hh_bias(
            nn.LSTM(self._lstm_input_size(D, H), H, batch_first=True, dtype=dtype))
        self.decoder_affine = nn.Linear(self._affine_input_size(H), V, dtype=dtype)

    @staticmethod
    def _lstm_input_size(D, H):
        return D

    @staticmethod
    def _affine_input_size(H):
        return H

    def layers(self):
        """The layers in the order of the fastseq model's params."""
        return [self.encoder_embed, self.encoder_lstm, self.decoder_embed, self.decoder_lstm,
                self.decoder_affine]

    def encode(self, xs):
        """xs (N,Ts) ids -> every step's hidden state (N,Ts,H)."""
        enc_hs, _ = self.encoder_lstm(self.encoder_embed(xs))
        return enc_hs

    def decode(self, xs, enc_hs, state):
        """xs (N,T) ids, enc_hs (N,Ts,H), state (h, c) each (1,N,H) -> scores (N,T,V) and the
        new state."""
        out, state = self.decoder_lstm(self.decoder_embed(xs), state)
        return self.decoder_affine(out), state

    def _start(self, xs):
        """Encode xs; the decoder starts from (the encoder's last h, zeros)."""
        enc_hs = self.encode(self._ids(xs))
        h = enc_hs[:, -1].unsqueeze(0)  # (1,N,H)
        return enc_hs, (h, torch.zeros_like(h))

    def forward(self, xs, ts):
        ts = self._ids(ts)
        enc_hs, state = self._start(xs)
        scores, _ = self.decode(ts[:, :-1], enc_hs, state)
        return F.cross_entropy(scores.flatten(0, 1), ts[:, 1:].flatten(),
                               ignore_index=self.ignore_label)

    @torch.no_grad()
    def generate(self, xs, start_id, sample_size):
        enc_hs, state = self._start(xs)
        ids = torch.full((enc_hs.shape[0], 1), start_id, dtype=torch.long, device=enc_hs.device)
        sampled = []
        for _ in range(sample_size):
            scores, state = self.decode(ids, enc_hs, state)
            ids = scores.argmax(dim=2)  # (N,1)
            sampled.append(ids)
        return torch.cat(sampled, dim=1) if sampled else ids[:, :0]

    def _ids(self, ids):
        """Token ids as an int64 tensor on the module's device (NumPy arrays accepted,
        reversed views included)."""
        device = self.decoder_affine.weight.device
        if isinstance(ids, torch.Tensor):
            return ids.to(device=device, dtype=torch.long)
        return torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)).to(device)


class TorchPeekySeq2seq(TorchSeq2seq):
    """PyTorch version of ``fastseq.PeekySeq2seq``: the encoder's last h goes into every
    decoder step, LSTM input [h, embed] and affine input [h, lstm out] (h first)."""

    fastseq_class = models.PeekySeq2seq

    @staticmethod
    def _lstm_input_size(D, H):
        return H + D

    @staticmethod
    def _affine_input_size(H):
        return 2 * H

    def decode(self, xs, enc_hs, state):
        N, T = xs.shape
        h = enc_hs[:, -1:].expand(N, T, -1)  # (N,T,H), the same at every step
        out, state = self.decoder_lstm(torch.cat([h, self.decoder_embed(xs)], dim=2), state)
        return self.decoder_affine(torch.cat([h, out], dim=2)), state


class TorchAttentionSeq2seq(TorchSeq2seq):
    """PyTorch version of ``fastseq.AttentionSeq2seq``: each decoder step attends over all
    encoder states (dot-product scores, softmax over the encoder steps, weighted sum); affine
    input [context, lstm out] (context first)."""

    fastseq_class = models.AttentionSeq2seq

    @staticmethod
    def _affine_input_size(H):
        return 2 * H

    def decode(self, xs, enc_hs, state):
        dec_hs, state = self.decoder_lstm(self.decoder_embed(xs), state)  # (N,Td,H)
        weights = torch.softmax(dec_hs @ enc_hs.transpose(1, 2), dim=2)  # (N,Td,Ts)
        contexts = weights @ enc_hs  # (N,Td,H)
        return self.decoder_affine(torch.cat([contexts, dec_hs], dim=2)), state


# fastseq model class name (as in a settings.json) -> its PyTorch twin
TORCH_MODULES = {cls.fastseq_class.__name__: cls
                 for cls in (TorchSeq2seq, TorchPeekySeq2seq, TorchAttentionSeq2seq)}


# ------------------------------------------------------------------------------------------
# Weights: the book's layout <-> PyTorch's
# ------------------------------------------------------------------------------------------


def _frozen_hh_bias(lstm):
    """The book's LSTM has one bias: keep bias_hh at zero and out of training."""
    with torch.no_grad():
        lstm.bias_hh_l0.zero_()
    lstm.bias_hh_l0.requires_grad_(False)
    return lstm


def _reorder_gates(W, order):
    """W (..., 4H) with its last axis in 4 gate blocks -> the blocks in ``order``."""
    *lead, H4 = W.shape
    return W.reshape(*lead, 4, H4 // 4)[..., order, :].reshape(W.shape)


def _numpy(tensor):
    return tensor.detach().cpu().numpy()


def _book_arrays(layer, what):
    """The book's params of one PyTorch layer, as new C-contiguous NumPy arrays (ValueError
    naming ``what`` if they are not finite)."""
    if isinstance(layer, nn.Embedding):
        arrays = [_numpy(layer.weight)]
    elif isinstance(layer, nn.Linear):
        arrays = [_numpy(layer.weight).T, _numpy(layer.bias)]
    else:
        Wx = _reorder_gates(_numpy(layer.weight_ih_l0).T, _BOOK_GATES_FROM_TORCH)
        Wh = _reorder_gates(_numpy(layer.weight_hh_l0).T, _BOOK_GATES_FROM_TORCH)
        if layer.bias:
            b = _reorder_gates(_numpy(layer.bias_ih_l0 + layer.bias_hh_l0),
                               _BOOK_GATES_FROM_TORCH)
        else:
            b = np.zeros(Wh.shape[1], Wh.dtype)
        arrays = [Wx, Wh, b]
    if not all(np.isfinite(a).all() for a in arrays):
        raise ValueError(f"{what} holds NaN or inf weights (did training diverge?)")
    return [np.array(a, order="C") for a in arrays]


def _copy_book_arrays(layer, arrays):
    """Write the book's params ``arrays`` of one layer into the PyTorch ``layer``."""
    if isinstance(layer, nn.Embedding):
        W, = arrays
        targets = [(layer.weight, W)]
    elif isinstance(layer, nn.Linear):
        W, b = arrays
        targets = [(layer.weight, W.T), (layer.bias, b)]
    else:
        Wx, Wh, b = arrays
        targets = [(layer.weight_ih_l0, _reorder_gates(Wx, _TORCH_GATES_FROM_BOOK).T),
                   (layer.weight_hh_l0, _reorder_gates(Wh, _TORCH_GATES_FROM_BOOK).T),
                   (layer.bias_ih_l0, _reorder_gates(b, _TORCH_GATES_FROM_BOOK)),
                   (layer.bias_hh_l0, np.zeros_like(b))]
    with torch.no_grad():
        for param, value in targets:
            param.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def _numpy_dtype(module, what):
    """The NumPy dtype of the module's parameters: all float32 or all float64."""
    dtypes = {p.dtype for p in module.parameters()}
    if len(dtypes) != 1 or not dtypes <= _NUMPY_DTYPES.keys():
        raise TypeError(f"{what} must have float32 or float64 parameters, all one dtype, got "
                        f"{', '.join(sorted(map(str, dtypes)))}; convert with {what}.float() "
                        f"or {what}.double()")
    return _NUMPY_DTYPES[dtypes.pop()]


def _checked_lstm(nn_lstm):
    """nn_lstm if it is what a TimeLSTM can be: one batch-first unidirectional layer."""
    if not isinstance(nn_lstm, nn.LSTM):
        raise TypeError(f"nn_lstm must be a torch.nn.LSTM, got {type(nn_lstm).__name__}")
    unsupported = [what for what, bad in (
        (f"num_layers={nn_lstm.num_layers} (only 1)", nn_lstm.num_layers != 1),
        ("bidirectional=True", nn_lstm.bidirectional),
        ("batch_first=False (TimeLSTM is batch first)", not nn_lstm.batch_first),
        (f"proj_size={nn_lstm.proj_size}", nn_lstm.proj_size != 0),
    ) if bad]
    if unsupported:
        raise ValueError("a TimeLSTM holds one unidirectional batch-first layer without "
                         f"projection; this nn.LSTM has unsupported {', '.join(unsupported)}")
    return nn_lstm


def _fastseq_layers(model):
    """The weighted layers of a fastseq model, in the order of TorchSeq2seq.layers()."""
    enc, dec = model.encoder, model.decoder
    return [enc.embed, enc.lstm, dec.embed, dec.lstm, dec.affine]


# ------------------------------------------------------------------------------------------
# Public conversions
# ------------------------------------------------------------------------------------------


def lstm_to_torch(time_lstm):
    """A ``torch.nn.LSTM(D, H, batch_first=True)`` (same dtype, on the CPU) computing what
    ``time_lstm`` (a ``fastseq.TimeLSTM``) computes from a zero state; bias_hh is zero and
    frozen."""
    if not isinstance(time_lstm, TimeLSTM):
        raise TypeError(f"time_lstm must be a fastseq.TimeLSTM, got {type(time_lstm).__name__}")
    Wx, Wh, b = time_lstm._checked_params()
    D, H = Wx.shape[0], Wh.shape[0]
    nn_lstm = _frozen_hh_bias(nn.LSTM(D, H, batch_first=True,
                                      dtype=_TORCH_DTYPES[time_lstm.dtype]))
    _copy_book_arrays(nn_lstm, [Wx, Wh, b])
    return nn_lstm


def lstm_from_torch(nn_lstm, stateful=False):
    """A ``fastseq.TimeLSTM`` with the weights of ``nn_lstm`` (one batch-first unidirectional
    layer; its two biases are summed, no bias counts as zero)."""
    _numpy_dtype(_checked_lstm(nn_lstm), "nn_lstm")
    return TimeLSTM(*_book_arrays(nn_lstm, "nn_lstm"), stateful=stateful)


def to_torch(model):
    """The PyTorch twin (``TorchSeq2seq``, ``TorchPeekySeq2seq`` or ``TorchAttentionSeq2seq``,
    on the CPU, in the model's dtype) of a fastseq ``Seq2seq``, ``PeekySeq2seq`` or
    ``AttentionSeq2seq``, holding copies of its params."""
    module_class = TORCH_MODULES.get(type(model).__name__)
    if module_class is None or type(model) is not module_class.fastseq_class:
        raise TypeError("model must be a fastseq Seq2seq, PeekySeq2seq or AttentionSeq2seq, "
                        f"got {type(model).__module__}.{type(model).__name__}")
    embed_W = model.encoder.embed.params[0]
    V, D = embed_W.shape
    H = model.encoder.lstm.params[1].shape[0]
    module = module_class(V, D, H, dtype=_TORCH_DTYPES[model.encoder.lstm.dtype])
    module.ignore_label = model.softmax.ignore_label
    for layer, fast_layer in zip(module.layers(), _fastseq_layers(model), strict=True):
        _copy_book_arrays(layer, fast_layer._checked_params())
    return module


def from_torch(module):
    """The fastseq model (float32 or float64, as the module) with the module's weights, for a
    module built by ``to_torch`` (or by its classes, e.g. loaded from ``fastseq export``).
    Does not touch NumPy's global RNG."""
    if not isinstance(module, TorchSeq2seq):
        raise TypeError("module must be built by fastseq.interop.to_torch (a TorchSeq2seq, "
                        f"TorchPeekySeq2seq or TorchAttentionSeq2seq), got "
                        f"{type(module).__module__}.{type(module).__name__}")
    dtype = _numpy_dtype(module, "module")
    arrays = [_book_arrays(layer, "module") for layer in module.layers()]
    state = np.random.get_state()  # the constructor draws initial weights from the global RNG
    try:
        model = module.fastseq_class(module.vocab_size, module.wordvec_size, module.hidden_size,
                                     dtype=dtype)
    finally:
        np.random.set_state(state)
    for fast_layer, layer_arrays in zip(_fastseq_layers(model), arrays, strict=True):
        for p, a in zip(fast_layer.params, layer_arrays, strict=True):
            p[...] = a
    model.softmax.ignore_label = module.ignore_label
    return model
