"""Property-based tests (hypothesis): every fast layer and model against its NumPy twin.

Shapes: N batch 1-6, T steps 1-6 (Ts encoder, Td decoder steps), D input width 1-7, H hidden
width 1-7, V vocabulary 2-9, Dc width of a constant input 1-7, M affine output width.

Each example draws sizes, a dtype (float32 / float64), a memory layout for every input
(contiguous, the book's reversed view ``[:, ::-1]``, every other step ``[:, ::2]`` of a longer
array, Fortran order), a state scenario for the LSTM (zero state, ``set_state(h)``,
``set_state(h, c)``, stateful carry-over), a thread count, and a seed for the values; then runs
the fast layer (or model) and the reference twin and compares every output and every gradient
with the named tolerances of conftest.py.

Profiles (conftest.py): "ci" when the environment variable CI is set (derandomized, at least
PROPERTY_MIN_EXAMPLES_CI examples over the file), "dev" otherwise. The last test checks both
the ci profile's configuration and the examples every property actually ran, in every run.
"""
import collections
import functools

import numpy as np
from hypothesis import given, is_hypothesis_test, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

import fastseq
import fastseq.layers as fast
import fastseq.reference as reference
import fastseq.reference.layers as ref
from conftest import PROPERTY_MIN_EXAMPLES_CI, assert_close, property_profile, tolerances

DTYPES = st.sampled_from([np.float32, np.float64])
LAYOUTS = st.sampled_from(["contiguous", "reversed", "strided", "fortran"])
THREADS = st.sampled_from([1, 2])
SEEDS = st.integers(0, 2**32 - 1)
N_ = st.integers(1, 6)
T_ = st.integers(1, 6)
D_ = st.integers(1, 7)
H_ = st.integers(1, 7)
V_ = st.integers(2, 9)

EXAMPLES = collections.Counter()  # examples run per property test, for the final check


def counted(test):
    """Counts every example ``test`` runs in EXAMPLES, under its name (put it below @given)."""
    @functools.wraps(test)
    def run(**kwargs):
        EXAMPLES[test.__name__] += 1
        return test(**kwargs)
    return run


def laid_out(values, layout):
    """An array equal to ``values`` (N, T, ...) in the given memory layout: a reversed view
    ``[:, ::-1]`` of the reversed copy, every other entry ``[:, ::2]`` of an array twice as long
    along axis 1 whose other entries are poison (NaN, or an id far outside any vocabulary, so
    a kernel that reads them shows it), or a Fortran-ordered copy."""
    if layout == "contiguous":
        return values
    if layout == "reversed":
        return np.ascontiguousarray(values[:, ::-1])[:, ::-1]
    if layout == "fortran":
        return np.asfortranarray(values)
    assert layout == "strided", layout
    poison = np.nan if values.dtype.kind == "f" else 10**6
    base = np.full((values.shape[0], 2 * values.shape[1]) + values.shape[2:], poison,
                   values.dtype)
    base[:, ::2] = values
    return base[:, ::2]


class Data:
    """Seeded values in a dtype and a layout: ``floats(shape)``, ``ids(shape, V)``."""

    def __init__(self, seed, dtype):
        self.rng = np.random.default_rng(seed)
        self.dtype = dtype

    def floats(self, shape, layout="contiguous", scale=1.0):
        return laid_out((scale * self.rng.standard_normal(shape)).astype(self.dtype), layout)

    def ids(self, shape, V, layout="contiguous"):
        return laid_out(self.rng.integers(0, V, shape), layout)


class threads_set:
    """``with threads_set(n):`` runs fastseq with n threads, restoring the count afterwards."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.previous = fastseq.get_num_threads()
        fastseq.set_num_threads(self.n)

    def __exit__(self, *exc):
        fastseq.set_num_threads(self.previous)


def compare(got, want, dtype):
    """Every named result of the fast run against the reference's."""
    assert got.keys() == want.keys()
    rtol, atol = tolerances(dtype)
    for name, value in want.items():
        if value is None:
            assert got[name] is None, name
        elif np.ndim(value) == 0 and not isinstance(value, np.ndarray):  # a loss
            assert np.ndim(got[name]) == 0, name
            assert_allclose(float(got[name]), float(value), rtol=rtol, atol=atol, err_msg=name)
        else:
            assert_close(got[name], value, dtype, err_msg=name)


# =================================================================== layers

@given(dtype=DTYPES, layout=LAYOUTS, N=N_, T=T_, V=V_, D=D_, threads=THREADS, seed=SEEDS)
@counted
def test_embedding(dtype, layout, N, T, V, D, threads, seed):
    data = Data(seed, dtype)
    W = data.floats((V, D))
    xs = data.ids((N, T), V, layout)
    dout = data.floats((N, T, D), layout)
    want_layer = ref.TimeEmbedding(W.copy())
    want = {"out": want_layer.forward(xs)}
    want_layer.backward(dout)
    want["dW"] = want_layer.grads[0]
    with threads_set(threads):
        layer = fast.TimeEmbedding(W.copy())
        got = {"out": layer.forward(xs)}
        assert layer.backward(dout) is None
        got["dW"] = layer.grads[0]
    compare(got, want, dtype)


LSTM_STATES = st.sampled_from(["zero", "set_h", "set_hc", "carry"])
LSTM_INPUTS = st.sampled_from(["xs", "const", "embed", "const+embed"])


@given(dtype=DTYPES, layouts=st.tuples(LAYOUTS, LAYOUTS, LAYOUTS), N=N_, T=T_, D=D_, H=H_,
       V=V_, Dc=D_, state=LSTM_STATES, inputs=LSTM_INPUTS, threads=THREADS, seed=SEEDS)
@counted
def test_lstm(dtype, layouts, N, T, D, H, V, Dc, state, inputs, threads, seed):
    """TimeLSTM.forward(xs, const=, embed=) and backward; the twin sees what they stand for:
    the embedded ids, concat([const at every step, xs]) (const first)."""
    xs_layout, dhs_layout, const_layout = layouts
    data = Data(seed, dtype)
    with_const, with_embed = "const" in inputs, "embed" in inputs
    Dc = Dc if with_const else 0
    Wx = data.floats((Dc + D, 4 * H), scale=1 / np.sqrt(Dc + D))
    Wh = data.floats((H, 4 * H), scale=1 / np.sqrt(H))
    b = data.floats((4 * H,), scale=0.5)
    W_embed = data.floats((V, D), scale=0.5)
    rounds = 2 if state == "carry" else 1
    xs = [data.ids((N, T), V, xs_layout) if with_embed else data.floats((N, T, D), xs_layout)
          for _ in range(rounds)]
    consts = [data.floats((N, Dc), const_layout) if with_const else None for _ in range(rounds)]
    dhs = [data.floats((N, T, H), dhs_layout) for _ in range(rounds)]
    h0, c0 = data.floats((N, H)), data.floats((N, H))

    def start(layer):
        if state == "set_h":
            layer.set_state(h0.copy())
        elif state == "set_hc":
            layer.set_state(h0.copy(), c0.copy())

    # the reference: embedding and concatenation spelled out
    want = {}
    layer = ref.TimeLSTM(Wx.copy(), Wh.copy(), b.copy(), stateful=state != "zero")
    embed = ref.TimeEmbedding(W_embed.copy())
    start(layer)
    for k in range(rounds):
        x = embed.forward(xs[k]) if with_embed else xs[k]
        if with_const:
            x = np.concatenate([np.repeat(consts[k][:, None, :], T, axis=1), x], axis=2)
        want[f"hs{k}"] = layer.forward(x)
        want[f"h{k}"], want[f"c{k}"] = layer.h.copy(), layer.c.copy()
        dx = layer.backward(dhs[k])
        want[f"dh{k}"] = layer.dh
        want[f"dconst{k}"] = dx[:, :, :Dc].sum(axis=1) if with_const else None
        if with_embed:
            embed.backward(dx[:, :, Dc:])
            want[f"dxs{k}"] = None
            want[f"dW_embed{k}"] = embed.grads[0].copy()
        else:
            want[f"dxs{k}"] = dx[:, :, Dc:]
        for name, g in zip(("dWx", "dWh", "db"), layer.grads):
            want[f"{name}{k}"] = g.copy()

    got = {}
    with threads_set(threads):
        layer = fast.TimeLSTM(Wx.copy(), Wh.copy(), b.copy(), stateful=state != "zero")
        embed = fast.TimeEmbedding(W_embed.copy()) if with_embed else None
        start(layer)
        for k in range(rounds):
            got[f"hs{k}"] = layer.forward(xs[k], const=consts[k], embed=embed)
            got[f"h{k}"], got[f"c{k}"] = layer.h.copy(), layer.c.copy()
            got[f"dxs{k}"] = layer.backward(dhs[k])
            got[f"dh{k}"] = layer.dh
            got[f"dconst{k}"] = layer.dconst
            if with_embed:
                got[f"dW_embed{k}"] = embed.grads[0].copy()
            for name, g in zip(("dWx", "dWh", "db"), layer.grads):
                got[f"{name}{k}"] = g.copy()
    compare(got, want, dtype)


@given(dtype=DTYPES, layouts=st.tuples(LAYOUTS, LAYOUTS, LAYOUTS), N=N_, T=T_, M=V_,
       widths=st.lists(D_, min_size=1, max_size=3), as_tuple=st.booleans(),
       Dc=st.one_of(st.none(), D_), threads=THREADS, seed=SEEDS)
@counted
def test_affine(dtype, layouts, N, T, M, widths, as_tuple, Dc, threads, seed):
    """TimeAffine.forward(x or a tuple of parts, const=); the twin sees the concatenation
    concat([const at every step, *parts])."""
    x_layout, dout_layout, const_layout = layouts
    data = Data(seed, dtype)
    if not as_tuple:
        widths = [sum(widths)]
    Dx = sum(widths)
    W = data.floats(((Dc or 0) + Dx, M))
    b = data.floats((M,))
    parts = [data.floats((N, T, w), x_layout) for w in widths]
    const = None if Dc is None else data.floats((N, Dc), const_layout)
    dout = data.floats((N, T, M), dout_layout)

    layer = ref.TimeAffine(W.copy(), b.copy())
    full = np.concatenate(parts, axis=2)
    if const is not None:
        full = np.concatenate([np.repeat(const[:, None, :], T, axis=1), full], axis=2)
    want = {"out": layer.forward(full)}
    dfull = layer.backward(dout)
    want["dconst"] = None if const is None else dfull[:, :, :Dc].sum(axis=1)
    edges = np.cumsum([Dc or 0] + widths)
    for i in range(len(widths)):
        want[f"dx{i}"] = dfull[:, :, edges[i]:edges[i + 1]]
    want["dW"], want["db"] = layer.grads

    with threads_set(threads):
        layer = fast.TimeAffine(W.copy(), b.copy())
        x = tuple(parts) if as_tuple else parts[0]
        got = {"out": layer.forward(x, const=const)}
        dx = layer.backward(dout)
        assert isinstance(dx, tuple) == as_tuple
        for i, d in enumerate(dx if as_tuple else (dx,)):
            got[f"dx{i}"] = d
        got["dconst"] = layer.dconst
        got["dW"], got["db"] = layer.grads
    compare(got, want, dtype)


@given(dtype=DTYPES, layouts=st.tuples(LAYOUTS, LAYOUTS), N=N_, T=T_, V=V_,
       ignored=st.floats(0, 0.9), one_hot=st.booleans(), scale=st.sampled_from([0.5, 3.0, 30.0]),
       dout=st.sampled_from([1, 0.37, 2.0]), threads=THREADS, seed=SEEDS)
@counted
def test_softmax_with_loss(dtype, layouts, N, T, V, ignored, one_hot, scale, dout, threads,
                           seed):
    xs_layout, ts_layout = layouts
    data = Data(seed, dtype)
    xs = data.floats((N, T, V), xs_layout, scale=scale)
    labels = data.rng.integers(0, V, (N, T))
    if one_hot:
        ts = laid_out(np.eye(V, dtype=dtype)[labels], ts_layout)
    else:
        labels[data.rng.random((N, T)) < ignored] = -1
        labels[data.rng.integers(N), data.rng.integers(T)] = data.rng.integers(V)  # one kept
        ts = laid_out(labels, ts_layout)
    layer = ref.TimeSoftmaxWithLoss()
    want = {"loss": layer.forward(xs, ts)}
    want["dxs"] = layer.backward(dout)
    with threads_set(threads):
        layer = fast.TimeSoftmaxWithLoss()
        got = {"loss": layer.forward(xs, ts)}
        got["dxs"] = layer.backward(dout)
        assert_array_equal(layer.backward(dout), got["dxs"])  # repeatable
    compare(got, want, dtype)
    if not one_hot:
        assert (got["dxs"][np.asarray(ts) == -1] == 0).all()


@given(dtype=DTYPES, layouts=st.tuples(LAYOUTS, LAYOUTS, LAYOUTS), N=N_, Ts=T_, Td=T_, H=H_,
       threads=THREADS, seed=SEEDS)
@counted
def test_attention(dtype, layouts, N, Ts, Td, H, threads, seed):
    enc_layout, dec_layout, dout_layout = layouts
    data = Data(seed, dtype)
    hs_enc = data.floats((N, Ts, H), enc_layout)
    hs_dec = data.floats((N, Td, H), dec_layout)
    dout = data.floats((N, Td, H), dout_layout)
    layer = ref.TimeAttention()
    want = {"contexts": layer.forward(hs_enc, hs_dec),
            "weights": np.stack(layer.attention_weights, axis=1)}
    want["dhs_enc"], want["dhs_dec"] = layer.backward(dout)
    with threads_set(threads):
        layer = fast.TimeAttention()
        got = {"contexts": layer.forward(hs_enc, hs_dec)}
        assert isinstance(layer.attention_weights, list) and len(layer.attention_weights) == Td
        got["weights"] = np.stack(layer.attention_weights, axis=1)
        got["dhs_enc"], got["dhs_dec"] = layer.backward(dout)
    compare(got, want, dtype)


# =================================================================== models

MODEL_NAMES = st.sampled_from(["Seq2seq", "PeekySeq2seq", "AttentionSeq2seq"])


@given(name=MODEL_NAMES, dtype=DTYPES, layouts=st.tuples(LAYOUTS, LAYOUTS), N=N_, Ts=T_, Td=T_,
       V=V_, D=D_, H=H_, weights=st.sampled_from(["book_init", "random"]),
       sample_size=st.integers(0, 6), threads=THREADS, seed=SEEDS)
@counted
def test_model(name, dtype, layouts, N, Ts, Td, V, D, H, weights, sample_size, threads, seed):
    """Loss, every grad and the attention weights; at float64 also the greedy ids (at float32
    an exact near-tie of two scores may legitimately pick the other id)."""
    xs_layout, ts_layout = layouts
    data = Data(seed, dtype)
    xs = data.ids((N, Ts), V, xs_layout)
    ts = data.ids((N, Td + 1), V, ts_layout)
    state = np.random.get_state()
    try:
        np.random.seed(seed % 2**32)
        ref_model = getattr(reference, name)(V, D, H, dtype=dtype)
        np.random.seed(seed % 2**32)
        model = getattr(fastseq, name)(V, D, H, dtype=dtype)
    finally:
        np.random.set_state(state)
    if weights == "random":
        for p, q in zip(model.params, ref_model.params):
            p[...] = q[...] = data.floats(p.shape, scale=0.5)
    for p, q in zip(model.params, ref_model.params):
        assert_array_equal(p, q)

    attention = name == "AttentionSeq2seq"
    want = {"loss": ref_model.forward(xs, ts)}
    if attention:
        want["weights"] = np.stack(ref_model.decoder.attention_weights, axis=1)
    ref_model.backward()
    for i, g in enumerate(ref_model.grads):
        want[f"grads[{i}]"] = g
    want_ids = ref_model.generate(xs, 0, sample_size)

    with threads_set(threads):
        got = {"loss": model.forward(xs, ts)}
        if attention:
            got["weights"] = np.stack(model.decoder.attention_weights, axis=1)
        model.backward()
        for i, g in enumerate(model.grads):
            got[f"grads[{i}]"] = g
        got_ids = model.generate(xs, 0, sample_size)
    compare(got, want, dtype)
    if N == 1:
        assert type(got_ids) is list and len(got_ids) == sample_size
        assert all(type(i) is int for i in got_ids)
    else:
        assert isinstance(got_ids, np.ndarray) and got_ids.shape == (N, sample_size)
    if np.dtype(dtype) == np.float64:
        assert_array_equal(np.asarray(got_ids), np.asarray(want_ids), err_msg="generated ids")


# =================================================================== the example count

def test_every_property_runs_its_examples(request):
    """At least PROPERTY_MIN_EXAMPLES_CI examples in every CI run (issue 6), checked in every
    run, whatever the profile, in two parts:

    - the configuration: CI selects the "ci" profile (fixed examples, no deadline), whose
      max_examples per property, over the properties of this file, add up to the minimum;
    - the count: every property selected to run before this test (all of them when the file
      runs whole: pytest runs a file's tests in order) ran at least the active profile's
      max_examples examples, i.e. hypothesis did not stop early.
    """
    properties = {obj for obj in globals().values() if is_hypothesis_test(obj)}
    ci = settings.get_profile("ci")
    assert property_profile({"CI": "true"}) == "ci"
    assert ci.derandomize and ci.deadline is None and ci.database is None
    assert ci.max_examples * len(properties) >= PROPERTY_MIN_EXAMPLES_CI

    items = request.session.items
    ran = [item.name for item in items[:items.index(request.node)]
           if getattr(item, "obj", None) in properties]
    profile, wanted = settings.get_current_profile_name(), settings.default.max_examples
    print(f"hypothesis profile {profile!r}: {sum(EXAMPLES.values())} examples {dict(EXAMPLES)}")
    for name in ran:
        assert EXAMPLES[name] >= wanted, \
            f"{name} ran {EXAMPLES[name]} examples, fewer than max_examples={wanted}"
    if profile == "ci" and len(ran) == len(properties):
        assert sum(EXAMPLES.values()) >= PROPERTY_MIN_EXAMPLES_CI
