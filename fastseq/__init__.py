"""fastseq: the seq2seq layers and models of 'Deep Learning from Scratch 2' (ch. 7-8), with the
time loops compiled by Numba. Same classes, arguments, params/grads and numbers as the book's.
"""

from .layers import TimeAffine, TimeAttention, TimeEmbedding, TimeLSTM, TimeSoftmaxWithLoss
from .models import (AttentionDecoder, AttentionEncoder, AttentionSeq2seq, Decoder, Encoder,
                     PeekyDecoder, PeekySeq2seq, Seq2seq)
from .optim import SGD, Adam, clip_grads, remove_duplicate
from .threads import get_num_threads, set_num_threads
from .training import Trainer, TrainingDiverged, accuracy, eval_seq2seq

__all__ = [
    "TimeAffine", "TimeAttention", "TimeEmbedding", "TimeLSTM", "TimeSoftmaxWithLoss",
    "Encoder", "Decoder", "Seq2seq", "PeekyDecoder", "PeekySeq2seq",
    "AttentionEncoder", "AttentionDecoder", "AttentionSeq2seq",
    "SGD", "Adam", "clip_grads", "remove_duplicate",
    "get_num_threads", "set_num_threads",
    "Trainer", "TrainingDiverged", "eval_seq2seq", "accuracy",
]
__version__ = "0.1.0"
