"""Generation: sampling math, greedy parity with PyTorch, seeds, stop strings, streaming, long prompts."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from canao.apps.generate import GenerationSettings, generate, next_token_distribution, stream
from canao.apps.inference import AppError
from canao.models.hf import load_pretrained
from canao.models.teacher import bundled_decoder_dir


def test_greedy_is_one_hot_at_the_argmax():
    probs = next_token_distribution(np.array([0.1, 3.0, -1.0]), [], GenerationSettings())
    assert probs.tolist() == [0.0, 1.0, 0.0]


def test_temperature_top_k_and_top_p():
    logits = np.log(np.array([0.5, 0.25, 0.15, 0.1]))
    probs = next_token_distribution(logits, [], GenerationSettings(temperature=1.0))
    np.testing.assert_allclose(probs, [0.5, 0.25, 0.15, 0.1])
    hot = next_token_distribution(logits, [], GenerationSettings(temperature=2.0))
    want = np.sqrt([0.5, 0.25, 0.15, 0.1])
    np.testing.assert_allclose(hot, want / want.sum())
    top2 = next_token_distribution(logits, [], GenerationSettings(temperature=1.0, top_k=2))
    np.testing.assert_allclose(top2, [2 / 3, 1 / 3, 0, 0])
    # top-p 0.7: the smallest prefix whose mass reaches 0.7 is {0.5, 0.25}.
    nucleus = next_token_distribution(logits, [], GenerationSettings(temperature=1.0, top_p=0.7))
    np.testing.assert_allclose(nucleus, [2 / 3, 1 / 3, 0, 0])


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    logits = np.array([2.0, -2.0, 1.0])
    probs = next_token_distribution(logits, [0, 1], GenerationSettings(temperature=1.0, repetition_penalty=2.0))
    want = np.exp([1.0, -4.0, 1.0])
    np.testing.assert_allclose(probs, want / want.sum())


@pytest.mark.parametrize("temperature, penalty", [(1e-300, 1.0), (1.0, 1e-300), (10.0, 100.0), (1e-9, 1e-9)])
def test_extreme_settings_still_give_a_distribution(temperature, penalty):
    logits = np.array([3.0, -2.0, 0.5, -np.inf])
    probs = next_token_distribution(
        logits, [0, 1], GenerationSettings(temperature=temperature, repetition_penalty=penalty)
    )
    assert np.all(np.isfinite(probs)) and probs.sum() == pytest.approx(1.0) and probs[3] == 0


def test_greedy_generation_matches_pytorch(lm_art):
    prompt = "ROMEO:\nWhat"
    ids = lm_art.tokenizer.encode(prompt).ids
    model = load_pretrained(bundled_decoder_dir()).model.eval()
    context = torch.tensor([ids])
    with torch.no_grad():
        for _ in range(20):
            context = torch.cat([context, model(context).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    want = lm_art.tokenizer.decode(context[0, len(ids) :].tolist())
    assert generate(lm_art, prompt, GenerationSettings(max_new_tokens=20)).text == want


def test_seeded_sampling_is_reproducible(lm_art):
    settings = GenerationSettings(max_new_tokens=25, temperature=1.0, top_k=50, seed=7)
    first, again = generate(lm_art, "KING:", settings), generate(lm_art, "KING:", settings)
    other = generate(lm_art, "KING:", GenerationSettings(max_new_tokens=25, temperature=1.0, top_k=50, seed=8))
    assert first.text == again.text and first.text != other.text


def test_stream_pieces_add_up_and_stop_strings_cut(lm_art):
    settings = GenerationSettings(max_new_tokens=40)
    events = list(stream(lm_art, "ROMEO:", settings))
    assert events[-1].done and sum(not e.done for e in events) > 5  # text arrives piece by piece
    full = "".join(e.text for e in events)
    assert full == generate(lm_art, "ROMEO:", settings).text
    stop = full.strip()[5:8]  # a string that occurs in the greedy output
    cut = generate(lm_art, "ROMEO:", GenerationSettings(max_new_tokens=40, stop=(stop,)))
    assert cut.stats.stop_reason == "stop_string" and stop not in cut.text
    assert full.startswith(cut.text) and full[len(cut.text) :].startswith(stop)
    stats = events[-1].stats
    assert stats.new_tokens == 40 and stats.time_to_first_token_ms > 0 and stats.tokens_per_s > 0


def test_a_prompt_longer_than_the_context_is_cut_from_the_left(lm_art):
    room = lm_art.model.spec.max_positions
    result = generate(lm_art, "the king " * room, GenerationSettings(max_new_tokens=10))
    assert result.stats.prompt_tokens_dropped == result.stats.prompt_tokens - (room - 10)
    assert result.stats.new_tokens == 10


def test_deadline_stops_generation(lm_art):
    result = list(stream(lm_art, "ROMEO:", GenerationSettings(max_new_tokens=50), deadline=time.monotonic()))
    assert result[-1].stats.stop_reason == "timeout" and result[-1].stats.new_tokens == 1


@pytest.mark.parametrize(
    "field, value", [("max_new_tokens", 0), ("top_p", 0.0), ("temperature", -1.0), ("stop", ("",))]
)
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(AppError, match=field):
        GenerationSettings(**{field: value})


def test_an_encoder_is_refused(qa_art):
    with pytest.raises(AppError, match="needs a `lm` artifact"):
        generate(qa_art, "hello")
