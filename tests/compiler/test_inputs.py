"""Bad inputs raise clear errors and never crash the process."""

from __future__ import annotations

import numpy as np
import pytest

from canao.compiler.build import build
from canao.compiler.lower import lower_model
from canao.compiler.runtime import CompiledModel, InputError
from tests.compiler.graphs import DEC, ENC, torch_model


@pytest.fixture(scope="module")
def encoder() -> CompiledModel:
    return build(lower_model(torch_model(ENC, "backbone"))).load()


@pytest.fixture(scope="module")
def decoder() -> CompiledModel:
    return build(lower_model(torch_model(DEC, "lm"))).load()


@pytest.mark.parametrize(
    "ids,message",
    [
        (np.zeros((2, 3, 4), dtype=np.int64), "shape"),
        (np.array([1.0, 2.0]), "must hold integers"),
        (np.array(["a", "b"]), "must hold integers"),
        (np.array([], dtype=np.int64), "empty"),
        (np.zeros((0, 5), dtype=np.int64), "empty"),
        (np.array([3, -1, 4]), "outside \\[0, 61\\)"),
        (np.array([3, 61]), "outside \\[0, 61\\)"),
        (np.array([2**40]), "outside"),
        (np.zeros(25, dtype=np.int64), "at most 24"),
        (np.array([1, 2], dtype="timedelta64[s]"), "must hold integers"),  # numpy calls timedelta64 an integer
        (np.array(["2026-12-01"], dtype="datetime64[D]"), "must hold integers"),
    ],
)
def test_bad_ids(encoder, ids, message):
    with pytest.raises(InputError, match=message):
        encoder.run(ids)


def test_mismatched_and_out_of_range_companions(encoder):
    ids = np.array([[1, 2, 3]])
    with pytest.raises(InputError, match="attention_mask.*must match"):
        encoder.run(ids, attention_mask=np.ones((1, 4), dtype=np.int64))
    with pytest.raises(InputError, match="token_type_ids.*outside \\[0, 2\\)"):
        encoder.run(ids, token_type_ids=np.array([[0, 2, 0]]))
    with pytest.raises(InputError, match="attention_mask.*outside \\[0, 2\\)"):
        encoder.run(ids, attention_mask=np.array([[1, 5, 1]]))


def test_native_checks_are_a_second_line(encoder):
    """Bypassing Python validation still cannot make native code read out of bounds."""
    bad = np.array([1, 99, 2], dtype=np.int32)
    types, mask = np.zeros(3, np.int32), np.zeros(3, np.float32)
    with pytest.raises(InputError, match="vocabulary range"):
        encoder._forward(bad, types, mask, None, 0)
    with pytest.raises(InputError, match="sequence length out of range"):
        encoder._forward(np.zeros(3, np.int32), types, mask, None, 23)
    for past in (2**31 - 1, 2**31 - 3, -1):  # past + T would overflow an int: the check must not
        with pytest.raises(InputError, match="sequence length out of range"):
            encoder._forward(np.zeros(3, np.int32), types, mask, None, past)


@pytest.mark.parametrize("threads", [0, -1, 257, 100_000, 2**31, 2**40, 1.5, True, "2"])
def test_thread_counts_are_bounded(encoder, threads):
    with pytest.raises(InputError, match="threads"):
        encoder.set_threads(threads)
    assert encoder.run([1, 2, 3])["last_hidden_state"].shape == (1, 3, ENC.hidden)  # the model is unharmed


def test_decoder_context_limits(decoder):
    session = decoder.new_session()
    session.prefill(np.arange(20) % 61)
    with pytest.raises(InputError, match="at most 4"):
        session.decode_step(np.arange(5))
    for t in range(4):
        session.decode_step(t)
    with pytest.raises(InputError, match="context is full"):
        session.decode_step(1)
    with pytest.raises(InputError, match="one sequence"):
        decoder.new_session().prefill(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(InputError, match=r"run\(\) is for encoders"):
        decoder.run(np.array([1]))


def test_the_process_survives_and_still_works(encoder):
    for bad in ([-5], [10**9], [[1, 2], [3]]):
        with pytest.raises((InputError, ValueError)):
            encoder.run(np.array(bad, dtype=object) if bad == [[1, 2], [3]] else bad)
    assert encoder.run([1, 2, 3])["last_hidden_state"].shape == (1, 3, ENC.hidden)
