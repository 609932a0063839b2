"""fastseq: the seq2seq layers and models of 'Deep Learning from Scratch 2' (ch. 7-8), with the
time loops compiled by Numba. Same classes, arguments, params/grads and numbers as the book's.
"""

from .layers import TimeAffine, TimeAttention, TimeEmbedding, TimeLSTM, TimeSoftmaxWithLoss
from .threads import get_num_threads, set_num_threads

__all__ = [
    "TimeAffine", "TimeAttention", "TimeEmbedding", "TimeLSTM", "TimeSoftmaxWithLoss",
    "get_num_threads", "set_num_threads",
]
__version__ = "0.1.0"
