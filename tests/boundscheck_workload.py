"""Every fastseq kernel at small shapes, for a process started with NUMBA_BOUNDSCHECK=1.

Run by tests/test_boundscheck.py in a new process with a fresh NUMBA_CACHE_DIR (numba's cache
index keys on the signature, the CPU and the bytecode, not on the boundscheck flag, so a shared
cache would serve code compiled without checks). Any out-of-bounds access inside a kernel then
raises IndexError and the process exits with an error.

Covers: every layer's forward and backward (TimeLSTM plain, stateful, with a constant input,
with folded embedding, both), the three models' forward, backward, one-question and batched
generate (more rows than a decode block; enough rows for the encoder's prefix tables), SGD,
Adam and clip_grads, with 1 and 2 threads, at the dtype named by the first argument (float32
or float64).

Shapes: N batch, T steps, D input width, H hidden width, V vocabulary, M affine output width.
"""

import sys

import numba
import numpy as np

import fastseq
import fastseq.layers as fast
from fastseq.kernels.decode import BLOCK
from fastseq.kernels.embedding import embedding_forward

N, T, D, H, V, M = 3, 4, 5, 6, 7, 8


def check_layers(rng, dtype):
    def floats(*shape):
        return rng.standard_normal(shape).astype(dtype)

    def ids(*shape):
        return rng.integers(0, V, shape)

    embed = fast.TimeEmbedding(floats(V, D))
    out = embed.forward(ids(N, T))
    embed.backward(floats(*out.shape))

    Dc = 2  # width of an input that is the same at every step (the peeky decoder's h)
    for stateful in (False, True):
        lstm = fast.TimeLSTM(floats(D, 4 * H), floats(H, 4 * H), floats(4 * H), stateful)
        lstm_const = fast.TimeLSTM(floats(Dc + D, 4 * H), floats(H, 4 * H), floats(4 * H),
                                   stateful)
        lstm_const.set_state(floats(N, H), floats(N, H))
        for layer, const in ((lstm, None), (lstm_const, floats(N, Dc))):
            # twice: a stateful layer starts the second forward from its h, c
            for x, with_embed in ((floats(N, T, D)[:, ::-1], False), (ids(N, T), True)):
                hs = layer.forward(x, const=const, embed=embed if with_embed else None)
                layer.backward(floats(*hs.shape))

    affine = fast.TimeAffine(floats(Dc + D, M), floats(M))
    for x, const in ((floats(N, T, Dc + D), None), ((floats(N, T, 3), floats(N, T, 4)), None),
                     (floats(N, T, D), floats(N, Dc))):
        y = affine.forward(x, const=const)
        affine.backward(floats(*y.shape))

    softmax = fast.TimeSoftmaxWithLoss()
    ts = ids(N, T)
    ts[0, 0] = softmax.ignore_label
    softmax.forward(floats(N, T, V), ts)
    softmax.backward()
    softmax.forward(floats(N, T, V), np.eye(V, dtype=dtype)[ids(N, T)])  # one-hot targets
    softmax.backward(0.5)

    attention = fast.TimeAttention()
    contexts = attention.forward(floats(N, T + 1, H), floats(N, T, H))
    attention.backward(floats(*contexts.shape))


def check_models(rng, dtype):
    Ts, Td = 5, 4
    for name in ("Seq2seq", "PeekySeq2seq", "AttentionSeq2seq"):
        model = getattr(fastseq, name)(V, D, H, dtype=dtype)
        for optimizer in (fastseq.SGD(), fastseq.Adam()):
            model.forward(rng.integers(0, V, (N, Ts)), rng.integers(0, V, (N, Td + 1)))
            model.backward()
            fastseq.clip_grads(model.grads, 1e-3)  # small enough to scale the grads
            optimizer.update(model.params, model.grads)
        assert len(model.generate(rng.integers(0, V, (1, Ts)), 0, Td)) == Td
        many = BLOCK + 2  # more rows than one decode block
        assert model.generate(rng.integers(0, V, (many, Ts)), 0, Td).shape == (many, Td)
        for Tq in (Ts, 2):  # the encoder's first two steps (all of them) from prefix tables
            questions = rng.integers(0, V, (4 * V * V, Tq))
            assert model.generate(questions, 0, Td).shape == (4 * V * V, Td)
        assert model.generate(rng.integers(0, V, (2, Ts)), 0, 0).shape == (2, 0)
        # the decoder alone, from a given state (h, or every encoder state for attention)
        state = rng.standard_normal((many, Ts, H)).astype(dtype)
        state = state if name == "AttentionSeq2seq" else state[:, -1]
        assert model.decoder.generate(state, 0, Td).shape == (many, Td)


def check_that_bounds_are_checked():
    """A kernel called directly with an id outside W (what fastseq's checks prevent) must raise
    IndexError: proof that this process compiled the kernels with bounds checks."""
    W = np.zeros((V, D))
    out = np.empty((1, 1, D))
    try:
        embedding_forward(out, np.array([[V]], np.int64), W)
    except IndexError:
        return
    raise AssertionError("embedding_forward read W[V] without an IndexError: the kernels were "
                         "not compiled with NUMBA_BOUNDSCHECK=1")


def main(dtype):
    assert numba.config.BOUNDSCHECK == 1, "run with NUMBA_BOUNDSCHECK=1"
    check_that_bounds_are_checked()
    rng = np.random.default_rng(0)
    for threads in (1, 2):
        fastseq.set_num_threads(threads)
        check_layers(rng, dtype)
        check_models(rng, dtype)
    print(f"every kernel ran at {np.dtype(dtype)} with bounds checks")


main(np.dtype(sys.argv[1]))
