"""Numba kernels of fastseq, installed as ``fastseq.kernels``."""
