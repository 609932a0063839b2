"""TimeLSTM forward+backward at the four shapes of the core issue."""

import pytest

from fastseq.benchmarks import LSTM_SHAPES, SIDES, LSTMStep

_workloads = {}


def _workload(shape):
    if shape not in _workloads:
        _workloads[shape] = LSTMStep(*shape)
    return _workloads[shape]


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("shape", LSTM_SHAPES, ids=lambda s: "N{}_T{}_D{}_H{}".format(*s))
def test_lstm_forward_backward(measure, shape, side):
    measure(_workload(shape), side)
