"""Request and response bodies of the HTTP API, with the limits that keep one request from hogging the server.

Every field is bounded (text lengths, counts, sampling ranges) and strictly
typed (`true` is no number, `"yes"` no boolean; NaN and Infinity are no
numbers; text must be valid Unicode, without lone surrogates); a request
outside them gets 422 and the error names the field (`loc`). The examples
appear in the OpenAPI schema (/docs, /openapi.json).
"""

from __future__ import annotations

from typing import Annotated, Any, Iterator, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, field_validator

MAX_QUESTION_CHARS = 1_000
MAX_CONTEXT_CHARS = 50_000
MAX_QUESTIONS = 16
MAX_TEXT_CHARS = 10_000
MAX_PROMPT_CHARS = 10_000
MAX_NEW_TOKENS = 1_024
MAX_STOP_CHARS = 64


# a misspelt field is a 422 naming it, not silently ignored; finite numbers only
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


def _number_only(value: Any) -> Any:
    """No coercion from booleans or text (`true`, `"5"`); JSON Schema's integers include 10.0, so that stays."""
    if isinstance(value, (bool, str)):
        raise ValueError(f"must be a JSON number, not {type(value).__name__}")
    return value


Int = Annotated[int, BeforeValidator(_number_only)]
Number = Annotated[float, BeforeValidator(_number_only)]
OptionalInt = Annotated[Optional[int], BeforeValidator(_number_only)]  # outside Optional: the bounds stay in the schema


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


class _Strict(BaseModel):
    model_config = STRICT  # subclasses' own model_config (their examples) is merged with it by pydantic

    @field_validator("*", mode="after")
    @classmethod
    def _valid_unicode(cls, value: Any) -> Any:
        """JSON may carry lone surrogates (`"\\ud800"`), which no tokenizer or UTF-8 response can hold."""
        for text in _strings(value):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as err:
                where = err.start
                raise ValueError(f"must be valid Unicode text, not a lone surrogate (at character {where})") from None
        return value


Question = Annotated[str, Field(min_length=1, max_length=MAX_QUESTION_CHARS, pattern=r"\S")]


class QARequest(_Strict):
    model: Optional[str] = Field(None, max_length=200, description="Model name (default: the first QA model).")
    question: Question | Annotated[list[Question], Field(min_length=1, max_length=MAX_QUESTIONS)] = Field(
        ..., description=f"A question, or a list of up to {MAX_QUESTIONS} about the same context."
    )
    context: str = Field(..., min_length=1, max_length=MAX_CONTEXT_CHARS, pattern=r"\S")
    top_k: Int = Field(1, ge=1, le=20, description="Answers per question.")
    max_answer_tokens: Int = Field(30, ge=1, le=512)
    doc_stride: Int = Field(128, ge=16, le=256, description="Token overlap of the windows of a long context.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "question": "When was the compiler written?",
                    "context": "The compiler was written by the canao team in 2026.",
                }
            ]
        },
    )


class Span(BaseModel):
    text: str
    start: int = Field(description="Character offset of the answer in the context.")
    end: int
    score: float
    probability: float


class QAAnswer(BaseModel):
    question: str
    answers: list[Span]


class QAResponse(BaseModel):
    model: str
    results: list[QAAnswer]
    timings: dict[str, float] = Field(description="tokenize_ms, model_ms, decode_ms, windows, total_ms")


class ClassifyRequest(_Strict):
    model: Optional[str] = Field(None, max_length=200)
    text: str = Field(..., min_length=1, max_length=MAX_TEXT_CHARS)
    text_pair: Optional[str] = Field(None, min_length=1, max_length=MAX_TEXT_CHARS)

    model_config = ConfigDict(json_schema_extra={"examples": [{"text": "a gripping, funny film"}]})


class ClassifyResponse(BaseModel):
    model: str
    label: str
    probabilities: dict[str, float]
    latency_ms: float


class GenerateRequest(_Strict):
    model: Optional[str] = Field(None, max_length=200)
    prompt: str = Field(..., max_length=MAX_PROMPT_CHARS)
    max_new_tokens: Int = Field(64, ge=1, le=MAX_NEW_TOKENS)
    temperature: Number = Field(0.0, ge=0.0, le=10.0, description="0: greedy.")
    top_k: Int = Field(0, ge=0, le=100_000)
    top_p: Number = Field(1.0, gt=0.0, le=1.0)
    repetition_penalty: Number = Field(1.0, gt=0.0, le=10.0)
    stop: list[Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]] = Field(
        default_factory=list, max_length=8, description="Generation ends before the first of these strings."
    )
    seed: OptionalInt = Field(None, ge=0, le=2**32 - 1)
    stream: StrictBool = Field(
        False, description="Server-sent events: `token` events with text, then one `done` event."
    )

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"prompt": "ROMEO:", "max_new_tokens": 40, "temperature": 0.8, "seed": 1}]},
    )


class GenerateResponse(BaseModel):
    model: str
    text: str
    stats: dict[str, float | int | str]


class ModelInfo(BaseModel):
    name: str
    task: str
    arch: str
    precision: str
    simd: str
    note: str = Field("", description="Why the model runs at this precision, where canao chose it.")
    max_positions: int
    instances: int
    in_flight: int


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class Health(BaseModel):
    status: str
    models: int


class ErrorBody(BaseModel):
    detail: str
