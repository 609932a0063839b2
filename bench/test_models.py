"""Training steps and greedy decoding of the book's models at the book's settings."""

import pytest

from fastseq.benchmarks import MODEL_SETTINGS, Decode, ModelStep

_workloads = {}


def _cached(key, make):
    if key not in _workloads:
        _workloads[key] = make()
    return _workloads[key]


@pytest.mark.parametrize("side", ["fastseq", "reference"])
@pytest.mark.parametrize("name", list(MODEL_SETTINGS))
def test_training_step(measure, name, side):
    measure(_cached(("step", name), lambda: ModelStep(name)), side)


# The reference decodes one question at a time (as the book does) on the first 200 questions;
# the summary compares times per question.
@pytest.mark.parametrize("side", ["fastseq", "reference"])
@pytest.mark.parametrize("name", list(MODEL_SETTINGS))
def test_decode_5000_batched(measure, name, side):
    measure(_cached(("batched", name), lambda: Decode(name, batched=True)), side)


@pytest.mark.parametrize("side", ["fastseq", "reference"])
@pytest.mark.parametrize("name", list(MODEL_SETTINGS))
def test_decode_one_at_a_time(measure, name, side):
    measure(_cached(("single", name), lambda: Decode(name, questions=500, batched=False)), side)
