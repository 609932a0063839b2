"""Plain NumPy twin of fastseq: slow, per-step code written from the equations.

The test oracle and the benchmark baseline for the compiled layers. Same class names,
constructor arguments, attributes, params/grads and initial weights as the book and as
`fastseq`; shares no code with the compiled path.
"""
from .layers import (
    TimeAffine,
    TimeAttention,
    TimeEmbedding,
    TimeLSTM,
    TimeSoftmaxWithLoss,
    sigmoid,
    softmax,
)
from .models import (
    AttentionDecoder,
    AttentionEncoder,
    AttentionSeq2seq,
    BaseModel,
    Decoder,
    Encoder,
    PeekyDecoder,
    PeekySeq2seq,
    Seq2seq,
)
from .optim import SGD, Adam, clip_grads

__all__ = [
    "sigmoid",
    "softmax",
    "TimeEmbedding",
    "TimeLSTM",
    "TimeAffine",
    "TimeSoftmaxWithLoss",
    "TimeAttention",
    "BaseModel",
    "Encoder",
    "Decoder",
    "Seq2seq",
    "PeekyDecoder",
    "PeekySeq2seq",
    "AttentionEncoder",
    "AttentionDecoder",
    "AttentionSeq2seq",
    "SGD",
    "Adam",
    "clip_grads",
]
