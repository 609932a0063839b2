"""Input checks run before any kernel: Numba does not bounds-check, so nothing unchecked may
reach a kernel. Every failure is a TypeError or ValueError that names the argument, says what
was expected and what was given, and how to fix it.

The dtype rule: float inputs must have exactly the dtype of the layer's weights (float32 or
float64). fastseq never casts them silently, and never changes the weights' dtype.
"""

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _shape_text(shape):
    return "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"


def _check_shape(name, x, shape):
    fits = x.ndim == len(shape)
    if fits:
        for s, d in zip(shape, x.shape):
            if s is not None and s != d:
                fits = False
    if not fits:
        raise ValueError(f"{name} must have shape {_shape_text(shape)}, got {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape}); pass at least one sequence "
                         "with at least one time step")


def floats(name, x, dtype, shape, dtype_of="the weights"):
    """x as a C-contiguous float array of ``dtype`` (None: float32 or float64) whose shape
    matches ``shape`` (None: any size); ``dtype_of`` names where the dtype comes from."""
    if not isinstance(x, np.ndarray) or x.dtype not in FLOAT_DTYPES:
        got = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
        raise TypeError(f"{name} must be a float32 or float64 NumPy array, got {got}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} has dtype {x.dtype}, expected {dtype} (the dtype of {dtype_of}); "
                        f"pass {name}.astype(np.{dtype}) (fastseq never casts silently)")
    _check_shape(name, x, shape)
    return np.ascontiguousarray(x)


# Up to this many ids (one question), Python's min and max of a list beat NumPy's reductions
# (measured, 7 ids: 0.8 against 4.7 us; generating one answer runs this check once).
_FEW_IDS = 64


def token_ids(name, ids, V, shape=(None, None), ignore_label=None):
    """ids as a C-contiguous int64 array of ``shape`` with values in [0, V) (or ignore_label).
    Any integer dtype is accepted (int8 .. uint64); its values are checked before the cast."""
    if not isinstance(ids, np.ndarray):
        try:
            ids = np.asarray(ids)
        except ValueError as e:  # ragged nested lists
            raise ValueError(f"{name} must be a rectangular array of token ids of shape "
                             f"{_shape_text(shape)}: {e}") from None
    if ids.dtype.kind not in "iu":  # signed or unsigned integers; not bool ("b")
        raise TypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}; "
                        f"convert with {name}.astype(np.int64) if the values are whole numbers")
    _check_shape(name, ids, shape)
    if ids.size <= _FEW_IDS:
        values = ids.ravel().tolist()
        low, high = min(values), max(values)
    else:
        low, high = ids.min(), ids.max()
    if low < 0 or high >= V:
        outside = (ids < 0) | (ids >= V)
        if ignore_label is not None:
            outside &= ids != ignore_label
        if outside.any():
            allowed = f"[0, {V})" + ("" if ignore_label is None else f" or {ignore_label} (ignore_label)")
            raise ValueError(f"{name} holds token id {ids[outside].ravel()[0]}, outside {allowed} "
                             f"for a vocabulary of {V}; check the vocabulary the ids were encoded with")
    return np.ascontiguousarray(ids, dtype=np.int64)


def one_hot_labels(name, ts, shape):
    """The labels (N,T) of one-hot targets ts (N,T,V) of ``shape``: numbers, a single 1 per
    (n, t) and 0 elsewhere (the book takes the argmax of anything; soft or empty rows would
    train on a label nobody chose)."""
    if ts.shape != shape:
        raise ValueError(f"one-hot {name} must have the shape of xs {shape}, got {ts.shape}")
    if ts.dtype.kind not in "biuf":
        raise TypeError(f"one-hot {name} must hold numbers, got dtype {ts.dtype}")
    if not ((ts == 0) | (ts == 1)).all() or (ts.sum(axis=2) != 1).any():
        raise ValueError(f"one-hot {name} must hold a single 1 per (n, t) and 0 elsewhere; pass "
                         f"integer labels (N, T) instead ({name}.argmax(axis=2) if that is meant)")
    return ts.argmax(axis=2)


def positive_number(name, value, allow_none=False):
    """value as a float > 0 (inf allowed), or None when ``allow_none``; else ValueError."""
    if allow_none and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not value > 0:
        raise ValueError(f"{name} must be a positive number{' or None' if allow_none else ''}, "
                         f"got {value!r}")
    return float(value)


def weights(names, arrays):
    """The weights of one layer: float32 or float64, all one dtype, C-contiguous."""
    dtype = arrays[0].dtype if isinstance(arrays[0], np.ndarray) else None
    for name, w in zip(names, arrays):
        if not isinstance(w, np.ndarray) or w.dtype not in FLOAT_DTYPES:
            got = w.dtype if isinstance(w, np.ndarray) else type(w).__name__
            raise TypeError(f"weight {name} must be a float32 or float64 NumPy array, got {got}")
        if w.dtype != dtype:
            raise TypeError(f"weight {name} is {w.dtype} but {names[0]} is {dtype}; "
                            "all weights of a layer must share one dtype")
        if not w.flags.c_contiguous:
            raise ValueError(f"weight {name} must be C-contiguous; pass "
                             f"np.ascontiguousarray({name})")
        if not np.isfinite(w).all():
            raise ValueError(f"weight {name} holds NaN or inf")
    return dtype


def unchanged(layer, shapes, kinds):
    """Cheap guard before kernels read params (and write grads): they still have their shapes,
    the layer's dtype and C layout, and grads are writable (the lists must be updated in
    place, never rebound to other arrays). ``kinds``: which of the two lists to check."""
    dtype = layer.dtype
    for kind in kinds:
        arrays = getattr(layer, kind)
        for i, shape in enumerate(shapes):
            a = arrays[i]
            if (not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != dtype
                    or not a.flags.c_contiguous or (kind == "grads" and not a.flags.writeable)):
                got = (f"{a.dtype} array of shape {a.shape}" if isinstance(a, np.ndarray)
                       else type(a).__name__)
                writable = " writable" if kind == "grads" else ""
                raise ValueError(
                    f"{type(layer).__name__}.{kind}[{i}] is no longer a{writable} C-contiguous "
                    f"{layer.dtype} array of shape {shape} (got a {got}); update {kind} in place "
                    f"({kind}[{i}][...] = new) instead of replacing the array")


def forward_done(layer, cache):
    if cache is None:
        raise ValueError(f"{type(layer).__name__}.backward() was called before forward(); "
                         "run forward on a batch first")
    return cache
