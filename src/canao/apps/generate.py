"""Text generation on a compiled decoder: sampling controls, stop strings and token streaming.

`stream(art, prompt, settings)` yields text pieces as tokens are produced
(the KV cache lives in the compiled runtime's session, so each new token
costs one decode step); the last event carries the statistics (time to first
token, tokens per second, why it stopped). Sampling follows the usual order:
repetition penalty (CTRL, Keskar et al. 2019) on the raw logits, then
temperature, top-k, top-p (nucleus, Holtzman et al. 2020); temperature 0 is
greedy. A seed makes sampling reproducible.

Text is streamed as the difference between successive decodings of all new
tokens, so a character that byte-level BPE spreads over several tokens comes
out whole, once it is complete.

Example::

    for event in stream(art, "To be, or not", GenerationSettings(max_new_tokens=40, temperature=0.8, seed=1)):
        print(event.text, end="", flush=True)
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Iterator, Optional

import numpy as np

from canao.apps.inference import AppError, encode_text, finite, need_task
from canao.compiler.artifact import Artifact

log = logging.getLogger(__name__)

MAX_STOP_STRINGS = 8


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0  # 0: no top-k cut
    top_p: float = 1.0  # 1: no nucleus cut
    repetition_penalty: float = 1.0  # 1: none; > 1 discourages tokens already in the context
    stop: tuple[str, ...] = ()  # generation ends before the first occurrence of any of these
    seed: Optional[int] = None

    def __post_init__(self) -> None:
        checks = {
            "max_new_tokens": 1 <= self.max_new_tokens <= 100_000,
            "temperature": 0.0 <= self.temperature <= 100.0,
            "top_k": self.top_k >= 0,
            "top_p": 0.0 < self.top_p <= 1.0,
            "repetition_penalty": 0.0 < self.repetition_penalty <= 100.0,
            "stop": len(self.stop) <= MAX_STOP_STRINGS and all(self.stop),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise AppError(
                f"invalid generation setting(s) {', '.join(f'{b}={getattr(self, b)!r}' for b in bad)}: need "
                "1 <= max_new_tokens, 0 <= temperature <= 100, top_k >= 0, 0 < top_p <= 1, "
                f"0 < repetition_penalty <= 100, at most {MAX_STOP_STRINGS} non-empty stop strings."
            )


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    prompt_tokens_dropped: int = 0  # cut from the left of a prompt too long for the context window
    new_tokens: int = 0
    time_to_first_token_ms: float = 0.0
    total_ms: float = 0.0
    stop_reason: str = ""  # "max_new_tokens", "stop_string", "context_full"

    @property
    def tokens_per_s(self) -> float:
        """Decode speed after the first token (the prefill is in time_to_first_token_ms)."""
        decode_s = (self.total_ms - self.time_to_first_token_ms) / 1e3
        return (self.new_tokens - 1) / decode_s if self.new_tokens > 1 and decode_s > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "tokens_per_s": self.tokens_per_s}


@dataclass
class GenerationEvent:
    text: str  # new text since the previous event (may be empty)
    token: Optional[int] = None  # the token that produced it (None on the final event)
    done: bool = False
    stats: GenerationStats = field(default_factory=GenerationStats)
    generated: int = 0  # tokens generated so far (a consumer that stops early can still count them)


def next_token_distribution(logits: np.ndarray, context: list[int], settings: GenerationSettings) -> np.ndarray:
    """Probabilities over the vocabulary after penalty, temperature, top-k and top-p (one-hot when greedy)."""
    scores = np.asarray(logits, dtype=np.float64).copy()
    with np.errstate(over="ignore", invalid="ignore"):  # extreme settings saturate; they never make NaN
        if settings.repetition_penalty != 1.0 and context:
            seen = np.unique(np.asarray(context))
            penalised = scores[seen]
            scores[seen] = np.where(
                penalised > 0, penalised / settings.repetition_penalty, penalised * settings.repetition_penalty
            )
        scores = np.clip(np.nan_to_num(scores, nan=-np.inf), -1e300, 1e300)
        if settings.temperature == 0.0:
            greedy = np.zeros_like(scores)
            greedy[int(np.argmax(scores))] = 1.0
            return greedy
        scores = (scores - scores.max()) / settings.temperature  # the best token scores 0 at any temperature
    if 0 < settings.top_k < scores.size:
        kth = np.partition(scores, -settings.top_k)[-settings.top_k]
        scores[scores < kth] = -np.inf
    probs = np.exp(scores)
    probs /= probs.sum()
    if settings.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        keep = int(np.searchsorted(cumulative, settings.top_p) + 1)  # the smallest prefix reaching top_p
        mask = np.zeros_like(probs, dtype=bool)
        mask[order[:keep]] = True
        probs = np.where(mask, probs, 0.0)
        probs /= probs.sum()
    return probs


def _pick(probs: np.ndarray, rng: np.random.Generator, greedy: bool) -> int:
    return int(np.argmax(probs)) if greedy else int(rng.choice(probs.size, p=probs))


def _earliest_stop(text: str, stops: tuple[str, ...]) -> int:
    """Index of the first stop string in `text`, or -1."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else -1


def stream(
    art: Artifact,
    prompt: str,
    settings: GenerationSettings = GenerationSettings(),
    *,
    deadline: Optional[float] = None,
) -> Iterator[GenerationEvent]:
    """Generate from `prompt`, yielding new text as it is produced; the final event has done=True and the stats.

    Past `deadline` (time.monotonic()), generation stops with stop_reason "timeout"."""
    need_task(art, "lm")
    started = time.perf_counter()
    stats = GenerationStats()
    ids = encode_text(art, prompt).ids
    if not ids:  # an empty prompt starts from the end-of-text token when the tokenizer has one
        eos = art.tokenizer.token_to_id("<|endoftext|>")
        ids = [eos if eos is not None else 0]
    room = art.model.spec.max_positions
    keep = max(1, room - settings.max_new_tokens)
    stats.prompt_tokens = len(ids)
    if len(ids) > keep:
        stats.prompt_tokens_dropped = len(ids) - keep
        log.warning(
            "the prompt has %d tokens; kept the last %d so that new tokens fit the %d-token context.",
            len(ids),
            keep,
            room,
        )
        ids = ids[-keep:]
    rng = np.random.default_rng(settings.seed)
    session = art.model.new_session()
    logits = finite(art, session.prefill(np.array(ids))[-1])
    context, new = list(ids), list[int]()
    emitted = ""  # text already streamed
    held = max((len(s) for s in settings.stop), default=1) - 1  # tail kept back: it may start a stop string
    stats.stop_reason = "max_new_tokens"
    while len(new) < settings.max_new_tokens:
        probs = next_token_distribution(logits, context, settings)
        token = _pick(probs, rng, settings.temperature == 0.0)
        new.append(token)
        context.append(token)
        if len(new) == 1:
            stats.time_to_first_token_ms = (time.perf_counter() - started) * 1e3
        text = art.tokenizer.decode(new)
        cut = _earliest_stop(text, settings.stop)
        if cut >= 0:
            stats.stop_reason = "stop_string"
            if cut > len(emitted):
                yield GenerationEvent(text[len(emitted) : cut], token, generated=len(new))
            emitted = text[:cut]
            break
        # Hold back an incomplete character (U+FFFD at the end) and a tail that could begin a stop string.
        ready = len(text.rstrip("\ufffd")) - (held if settings.stop else 0)
        if ready > len(emitted):
            yield GenerationEvent(text[len(emitted) : ready], token, generated=len(new))
            emitted = text[:ready]
        if session.length >= room:
            stats.stop_reason = "context_full"
            break
        if deadline is not None and time.monotonic() > deadline:
            stats.stop_reason = "timeout"
            break
        if len(new) < settings.max_new_tokens:
            logits = finite(art, session.decode_step(token)[-1])
    stats.new_tokens = len(new)
    if stats.stop_reason != "stop_string":
        text = art.tokenizer.decode(new)
        if len(text) > len(emitted):
            yield GenerationEvent(text[len(emitted) :], None, generated=len(new))
    stats.total_ms = (time.perf_counter() - started) * 1e3
    yield GenerationEvent("", None, done=True, stats=stats, generated=len(new))


@dataclass(frozen=True)
class Generation:
    text: str  # the continuation only
    stats: GenerationStats


def generate(art: Artifact, prompt: str, settings: GenerationSettings = GenerationSettings()) -> Generation:
    """`stream` collected: the whole continuation and its statistics."""
    pieces, stats = [], GenerationStats()
    for event in stream(art, prompt, settings):
        pieces.append(event.text)
        if event.done:
            stats = event.stats
    return Generation("".join(pieces), stats)
