"""The book's models at the book's settings: a training step, greedy decoding of 5,000
questions (batched, and one at a time), a whole PeekySeq2seq epoch on addition (driven by the
Trainer and by a book-style loop), and the start-up of a user's script."""

import pytest

from fastseq.benchmarks import MODEL_SETTINGS, SIDES, Decode, Epoch, ModelStep, Startup

_workloads = {}


def _cached(key, make):
    if key not in _workloads:
        _workloads[key] = make()
    return _workloads[key]


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("name", list(MODEL_SETTINGS))
def test_training_step(measure, name, side):
    measure(_cached(("step", name), lambda: ModelStep(name)), side)


# The reference decodes one question at a time (as the book does) on the first 200 questions;
# the summary compares times per question.
@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "one_at_a_time"])
@pytest.mark.parametrize("name", list(MODEL_SETTINGS))
def test_decode_5000(measure, name, batched, side):
    measure(_cached(("decode", name, batched), lambda: Decode(name, batched=batched)), side)


@pytest.mark.parametrize("side", ["fastseq", "reference"])
@pytest.mark.parametrize("driver", ["trainer", "loop"])
def test_peeky_epoch(measure, driver, side):
    if side == "reference" and driver == "loop":
        pytest.skip("one reference epoch (a book-style loop) serves both drivers")
    measure(_cached(("epoch", driver), lambda: Epoch(driver)), side)


@pytest.mark.parametrize("cold", [False, True], ids=["warm_cache", "cold_cache"])
def test_startup(measure, cold):
    measure(_cached(("startup", cold), lambda: Startup(cold)), "fastseq")
