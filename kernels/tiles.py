"""Register-tiled matrix products for the time loops, on CPUs with AVX-512.

Every step of an LSTM multiplies a small block of rows by the same weights (``h @ Wh``: 64 x 128
by 128 x 512 per thread at the book's sizes). OpenBLAS packs all of B into a buffer on every
such call. Here B is read where it lies (a 64-column panel of Wh is 32 KiB and stays in L1
across the row blocks), and each block of 6 rows x 64 columns of C lives in 24 vector registers
while the loop runs over k. Measured in kernels calling ``blas.gemm`` (one thread, float32,
alternating processes with and without the tiles, GFLOP/s): a backward step's 64x512 @ 512x128
172-173 against 121-124 for OpenBLAS, 20x650 @ 650x325 94-112 against 66, 64x1024 @ 1024x256
121-134 against 106; a forward step's 64x128 @ 128x512 127-130 on both.

Numba's loops do not get there (LLVM keeps the accumulators in memory and, tuned for these
CPUs, prefers 256-bit vectors), so the tile is written as LLVM IR: a loop over k whose body
broadcasts one element of each of the rows of A, loads four vectors of one row of B (eight
for a C of one or two rows) and does one fused multiply-add per row and vector. The function
carries ``"min-legal-vector-width"="512"``, without which LLVM splits every 512-bit operation
in two (measured: 90 against 150 GFLOP/s).

Each element of C is the fused multiply-add chain over k in order, whatever the tiling (and as
in blas's loop for few rows), so the result does not depend on how rows are split across
threads or on how many rows are multiplied at once.
"""

import llvmlite.binding as llvm
import numba
from llvmlite import ir
from numba import types
from numba.core.errors import TypingError
from numba.extending import intrinsic

from .jit import helper
from .views import row, span

VECTOR_BYTES = 64  # one AVX-512 register
PANEL_VECTORS = 4  # vectors per row of a tile: 64 float32 or 32 float64 columns
MAX_ROWS = 6  # rows of a tile: 6 x 4 accumulators and 4 vectors of B fill 28 of 32 registers
# One or two rows of C (a decoder step of one question) are tiled 8 vectors wide instead, so
# that 8 or 16 independent chains of multiply-adds hide their latency. Measured (one thread,
# float32, K=128, N=512, us per product): one row 2.2, against 2.0 for 16 vectors, 2.1 for 4
# and 2.8 for blas's loop over rows of B; two rows 2.2, against 2.4 for 4 vectors and 5.6 for
# the loop. One row reads all of B at about 100 GB/s, which is what bounds it.
FEW_ROWS, FEW_ROWS_VECTORS = 2, 8
# The tiles read B where it lies, one panel (K rows of a tile's width) at a time, which every
# block of rows reads again, as every panel reads all of A again; OpenBLAS packs both instead.
# That pays only while a panel and A stay in the L2 cache. Measured (one thread, float32,
# GFLOP/s, tiles against OpenBLAS): 350x650 @ 650x2600 (a PTB input projection, A 0.9 MB) 88
# against 113, 256x1024 @ 1024x256 108 against 114, but 128x1024 @ 1024x256 131 against 108.
# Rows of a panel that lie a multiple of 4 KiB apart share a few cache sets, so such a panel
# leaves the cache sooner: 64x512 @ 512x1024 41 against 68, with 1000 columns 75 against 75.
# Up to four blocks of rows (PTB's 20 rows per step) the tiles win even from further out:
# 20x2600 @ 2600x325 62-73 against 53.
CACHED_BYTES = 768 << 10  # A and a panel of B, beyond four blocks of rows
ALIASED_PANEL_BYTES = 64 << 10  # a panel of rows 4 KiB apart, beyond one block of rows


def _target_has_avx512():
    """Whether Numba compiles for a CPU with AVX-512F (its own choice of features: the host's
    unless NUMBA_CPU_FEATURES says otherwise)."""
    features = numba.config.CPU_FEATURES
    if features is None:
        features = llvm.get_host_cpu_features().flatten()
    return "+avx512f" in features.split(",")


AVAILABLE = _target_has_avx512()


def _float_type(dtype):
    return ir.FloatType() if dtype == types.float32 else ir.DoubleType()


def _vector_types(dtype):
    """(scalar IR type, bytes per element, lanes, vector IR type) of one AVX-512 register of
    ``dtype``."""
    scalar, size = _float_type(dtype), dtype.bitwidth // 8
    lanes = VECTOR_BYTES // size
    return scalar, size, lanes, ir.VectorType(scalar, lanes)


def _internal_function(module, name, arguments):
    """A new function ``name`` of the module, void, taking ``arguments`` (IR types), internal
    and with 512-bit vectors legal in it."""
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), arguments), name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    # llvmlite only knows a fixed list of attribute names; this one is written out verbatim.
    set.add(fn.attributes, '"min-legal-vector-width"="512"')
    return fn


def _tile_function(module, dtype, rows, vectors):
    """The IR function tile(A, lda, B, ldb, C, ldc, K, accumulate): C[:rows, :width] =
    A[:rows, :K] @ B[:K, :width] (+ C[:rows, :width] if accumulate), width = ``vectors``
    vectors, leading dimensions in elements. Defined once per module."""
    name = f"fastseq_tile_{dtype}_{rows}x{vectors}"
    if name in module.globals:
        return module.globals[name]
    scalar, size, lanes, vector = _vector_types(dtype)
    i1, i32, i64, ptr = ir.IntType(1), ir.IntType(32), ir.IntType(64), scalar.as_pointer()
    fn = _internal_function(module, name, [ptr, i64, ptr, i64, ptr, i64, i64, i1])
    fn.attributes.add("noinline")
    fma_name = f"llvm.fma.v{lanes}f{dtype.bitwidth}"
    fma = module.globals.get(fma_name) or ir.Function(
        module, ir.FunctionType(vector, [vector] * 3), fma_name)
    A, lda, B, ldb, C, ldc, K, accumulate = fn.args
    entry, loop, done = (fn.append_basic_block(n) for n in ("entry", "loop", "done"))

    def vector_at(builder, base, offset):
        return builder.bitcast(builder.gep(base, [offset]), vector.as_pointer())

    def c_at(builder, i, j):
        offset = builder.add(builder.mul(ir.Constant(i64, i), ldc), ir.Constant(i64, j * lanes))
        return vector_at(builder, C, offset)

    cells = [(i, j) for i in range(rows) for j in range(vectors)]
    b = ir.IRBuilder(entry)
    zero = ir.Constant(vector, [0.0] * lanes)  # C may be uninitialised: selected away
    start = [b.select(accumulate, b.load(c_at(b, i, j), align=size), zero)
             for i, j in cells]
    b.cbranch(b.icmp_signed(">", K, ir.Constant(i64, 0)), loop, done)

    b = ir.IRBuilder(loop)
    k = b.phi(i64)
    acc = [b.phi(vector) for _ in cells]
    b_row = b.mul(k, ldb)
    b_vectors = [b.load(vector_at(b, B, b.add(b_row, ir.Constant(i64, j * lanes))),
                        align=size) for j in range(vectors)]
    undef = ir.Constant(vector, ir.Undefined)
    broadcast = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
    summed = []
    for i in range(rows):
        a = b.load(b.gep(A, [b.add(b.mul(ir.Constant(i64, i), lda), k)]))
        a = b.shuffle_vector(b.insert_element(undef, a, ir.Constant(i32, 0)), undef, broadcast)
        summed += [b.call(fma, [a, b_vectors[j], acc[i * vectors + j]])
                   for j in range(vectors)]
    k_next = b.add(k, ir.Constant(i64, 1))
    k.add_incoming(ir.Constant(i64, 0), entry)
    k.add_incoming(k_next, loop)
    for phi, first, last in zip(acc, start, summed):
        phi.add_incoming(first, entry)
        phi.add_incoming(last, loop)
    b.cbranch(b.icmp_signed("<", k_next, K), loop, done)

    b = ir.IRBuilder(done)
    results = [b.phi(vector) for _ in cells]
    for result, first, last in zip(results, start, summed):
        result.add_incoming(first, entry)
        result.add_incoming(last, loop)
    for (i, j), result in zip(cells, results):
        b.store(result, c_at(b, i, j), align=size)
    b.ret_void()
    return fn


@intrinsic(prefer_literal=True)
def _tile(typingctx, dtype, rows, vectors, a, lda, b, ldb, c, ldc, depth, accumulate):
    """One tile of ``rows`` x ``vectors`` (constants) from addresses of float arrays of
    ``dtype``."""
    if not (isinstance(rows, types.IntegerLiteral) and isinstance(vectors, types.IntegerLiteral)):
        raise TypingError("_tile's rows and vectors must be constants")
    element = dtype.dtype

    def codegen(context, builder, signature, args):
        a, lda, b, ldb, c, ldc, depth, accumulate = args[3:]
        fn = _tile_function(builder.module, element, rows.literal_value, vectors.literal_value)
        ptr = _float_type(element).as_pointer()
        flag = builder.icmp_unsigned("!=", accumulate, ir.Constant(accumulate.type, 0))
        builder.call(fn, [builder.inttoptr(a, ptr), lda, builder.inttoptr(b, ptr), ldb,
                          builder.inttoptr(c, ptr), ldc, depth, flag])
        return context.get_dummy_value()

    address = types.intp
    return types.void(dtype, rows, vectors, address, types.intp, address, types.intp, address,
                      types.intp, types.intp, types.boolean), codegen


def _transpose_function(module, dtype):
    """The IR function transpose(src, lds, dst, ldd): the square block of one vector's lanes
    of rows at src (lds elements apart), written transposed at dst (rows ldd elements apart).
    Defined once per module."""
    name = f"fastseq_transpose_{dtype}"
    if name in module.globals:
        return module.globals[name]
    scalar, size, lanes, vector = _vector_types(dtype)
    i32, i64, ptr = ir.IntType(32), ir.IntType(64), scalar.as_pointer()
    fn = _internal_function(module, name, [ptr, i64, ptr, i64])
    src, lds, dst, ldd = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))

    def row_at(base, ld, i):
        return b.bitcast(b.gep(base, [b.mul(ir.Constant(i64, i), ld)]), vector.as_pointer())

    rows = [b.load(row_at(src, lds, i), align=size) for i in range(lanes)]
    # For each bit s of the index: element j of row i, with s set in j and clear in i, trades
    # places with element j - s of row i + s. After every bit, element j of row i is at
    # element i of row j.
    s = 1
    while s < lanes:
        low = ir.Constant(ir.VectorType(i32, lanes),
                          [j if not j & s else lanes + j - s for j in range(lanes)])
        high = ir.Constant(ir.VectorType(i32, lanes),
                           [j + s if not j & s else lanes + j for j in range(lanes)])
        for i in range(lanes):
            if not i & s:
                x, y = rows[i], rows[i + s]
                rows[i], rows[i + s] = b.shuffle_vector(x, y, low), b.shuffle_vector(x, y, high)
        s *= 2
    for i, r in enumerate(rows):
        b.store(r, row_at(dst, ldd, i), align=size)
    b.ret_void()
    return fn


@intrinsic
def _transpose(typingctx, dtype, src, lds, dst, ldd):
    """dst (rows ldd apart) = the transpose of the square block of one vector's lanes at src
    (rows lds apart), from addresses of float arrays of ``dtype``."""
    element = dtype.dtype

    def codegen(context, builder, signature, args):
        src, lds, dst, ldd = args[1:]
        fn = _transpose_function(builder.module, element)
        ptr = _float_type(element).as_pointer()
        builder.call(fn, [builder.inttoptr(src, ptr), lds, builder.inttoptr(dst, ptr), ldd])
        return context.get_dummy_value()

    address = types.intp
    return types.void(dtype, address, types.intp, address, types.intp), codegen


@helper
def _row_blocks(C, A, B, j0, accumulate, wide):
    """Columns [j0, j0 + width) of C (+)= A @ B, width that of the tiles: a C of FEW_ROWS rows
    or fewer in one tile FEW_ROWS_VECTORS wide when ``wide``, else in blocks of MAX_ROWS rows
    and one of fewer, PANEL_VECTORS wide."""
    M, K = A.shape
    size = C.itemsize
    lda, ldb, ldc = A.strides[0] // size, B.strides[0] // size, C.strides[0] // size
    a, b, c = A.ctypes.data, B.ctypes.data + j0 * size, C.ctypes.data + j0 * size
    if wide and M == 2:
        _tile(C.dtype, 2, FEW_ROWS_VECTORS, a, lda, b, ldb, c, ldc, K, accumulate)
        return
    if wide and M == 1:
        _tile(C.dtype, 1, FEW_ROWS_VECTORS, a, lda, b, ldb, c, ldc, K, accumulate)
        return
    i = 0
    while i + MAX_ROWS <= M:
        _tile(C.dtype, MAX_ROWS, PANEL_VECTORS, a + i * A.strides[0], lda, b, ldb,
              c + i * C.strides[0], ldc, K, accumulate)
        i += MAX_ROWS
    a, c, left = a + i * A.strides[0], c + i * C.strides[0], M - i
    if left == 5:
        _tile(C.dtype, 5, PANEL_VECTORS, a, lda, b, ldb, c, ldc, K, accumulate)
    elif left == 4:
        _tile(C.dtype, 4, PANEL_VECTORS, a, lda, b, ldb, c, ldc, K, accumulate)
    elif left == 3:
        _tile(C.dtype, 3, PANEL_VECTORS, a, lda, b, ldb, c, ldc, K, accumulate)
    elif left == 2:
        _tile(C.dtype, 2, PANEL_VECTORS, a, lda, b, ldb, c, ldc, K, accumulate)
    elif left == 1:
        _tile(C.dtype, 1, PANEL_VECTORS, a, lda, b, ldb, c, ldc, K, accumulate)


@helper
def panel_width(C):
    """Columns of C per tile: wider for one or two rows (``FEW_ROWS_VECTORS``)."""
    vectors = FEW_ROWS_VECTORS if C.shape[0] <= FEW_ROWS else PANEL_VECTORS
    return vectors * (VECTOR_BYTES // C.itemsize)


@helper
def _pays(A, B, width):
    """Whether tiles of ``width`` columns beat OpenBLAS at A @ B (see CACHED_BYTES)."""
    M, K = A.shape
    if M <= MAX_ROWS:  # one block of rows: each panel is read once
        return True
    panel = K * width * B.itemsize
    if panel > ALIASED_PANEL_BYTES and B.strides[0] % 4096 == 0:
        return False
    return M <= 4 * MAX_ROWS or M * K * A.itemsize + panel <= CACHED_BYTES


@helper
def _scale_columns(C, n, beta):
    """C[:, :n] *= beta before the tiles add A @ B to it (beta 0: they overwrite it; 1: as is)."""
    if beta != 0.0 and beta != 1.0:
        for i in range(C.shape[0]):
            for j in range(n):
                C[i, j] *= beta


@helper
def tiled_product(C, A, B, beta):
    """C[:, :n] = A @ B[:, :n] + beta * C[:, :n] for the largest n that is a multiple of
    ``panel_width(C)``, or n = 0 where OpenBLAS is faster; n returned (the caller does the
    rest). C (M,N), A (M,K), B (K,N): rows possibly strided, elements within a row
    contiguous. Only where AVAILABLE."""
    M, N = C.shape
    width = panel_width(C)
    n = N - N % width if _pays(A, B, width) else 0
    _scale_columns(C, n, beta)
    for j0 in range(0, n, width):
        _row_blocks(C, A, B, j0, beta != 0.0, M <= FEW_ROWS)
    return n


# The weights that every step of a time loop multiplies (Wh, and Wh.T going back) are packed
# once per call: each panel of PANEL_VECTORS vectors' width, its K rows, made contiguous, as
# OpenBLAS does on every call. Read where they lie, a panel's rows are a row of the weights
# apart (2 KiB at H=128, so they fill only an eighth of the L1 cache's sets; 10 KiB at H=650,
# where the prefetchers lose them: each row's 256 bytes lie in a page of their own); packed, a
# panel is one stream. Measured (one thread, float32, GFLOP/s, where they lie against packed,
# two runs): a thread's share of a step (4 gates of half the units) at N=20, H=650 forward
# 64-69 against 82-89, backward 55-66 against 72-73; at N=64, H=256 70-101 against 125-129.
PACK_GROUP_BYTES = 256 << 10  # rows of A that go through every panel before the next rows


@helper
def _packed_columns(N, itemsize):
    """The panel width, and the columns of N that pack lays out in whole panels (none
    without AVAILABLE: then all of them are the columns left over)."""
    width = PANEL_VECTORS * (VECTOR_BYTES // itemsize)
    return width, (N - N % width if AVAILABLE else 0)


@helper
def pack(out, B, part, parts):
    """Part ``part`` of ``parts`` of the layout of B (K,N) in out (K*N,) that packed_panels
    reads: its whole panels one after another, each K x width C-contiguous, then the columns
    left over, K x (N - n) C-contiguous. The panels and the columns left over are split into
    ``parts`` near-equal groups, one per thread. B's rows (``Wh``, a block of its columns) or
    its columns (``Wh.T``) must be contiguous. Rows are copied along them; columns in square
    blocks of one vector's lanes, each transposed in registers (``_transpose``). Measured, one
    thread, Wh.T, against 8 columns at a time element by element: H=128 9 against 62 us,
    H=256 91 against 255 us, H=650 0.9 against 1.7 ms (float32); H=128 float64 36 against
    132 us. Wh by rows takes 8-12 us at H=128."""
    K, N = B.shape
    size = out.itemsize
    by_rows = B.strides[1] == size
    if not by_rows and B.strides[0] != size:
        raise ValueError("pack: B needs contiguous rows or columns")
    width, n = _packed_columns(N, size)
    pieces = n // width + (1 if n < N else 0)
    for piece in range(part * pieces // parts, (part + 1) * pieces // parts):
        j0 = piece * width
        w = width if j0 < n else N - n
        dst = out[K * j0:K * (j0 + w)]
        if by_rows:
            for k in range(K):
                src, d = span(row(B, k), j0, w), span(dst, k * w, w)
                for j in range(w):
                    d[j] = src[j]
        else:  # square blocks of B.T transposed in registers, then the edges left over
            BT = B.T
            lanes, ld = VECTOR_BYTES // size, BT.strides[0] // size
            wv, Kv = w - w % lanes, K - K % lanes
            for jb in range(0, wv, lanes):
                for kb in range(0, Kv, lanes):
                    _transpose(out.dtype, BT.ctypes.data + ((j0 + jb) * ld + kb) * size, ld,
                               dst.ctypes.data + (kb * w + jb) * size, w)
            for k in range(K):
                d = span(dst, k * w, w)
                for j in range(0 if k >= Kv else wv, w):
                    d[j] = BT[j0 + j, k]


@helper
def packed_panels(C, A, P, beta):
    """C[:, :n] = A @ B[:, :n] + beta * C[:, :n] for the columns of B (K,N) that P holds in
    whole panels (see pack); n returned (the caller does the rest). C (M,N), A (M,K): rows
    possibly strided, elements within a row contiguous. Rows of A go through all panels in
    groups of up to PACK_GROUP_BYTES, which stay in cache meanwhile."""
    M, N = C.shape
    K = A.shape[1]
    width, n = _packed_columns(N, C.itemsize)
    _scale_columns(C, n, beta)
    group = max(PACK_GROUP_BYTES // (max(K, 1) * A.itemsize) // MAX_ROWS, 1) * MAX_ROWS
    for i0 in range(0, M, group):
        for j0 in range(0, n, width):
            panel = P[K * j0:K * (j0 + width)].reshape((K, width))
            _row_blocks(C[i0:i0 + group, j0:j0 + width], A[i0:i0 + group], panel, 0,
                        beta != 0.0, False)
    return n
