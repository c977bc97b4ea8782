"""SQuAD v1.1 / v2.0 JSON reading (the official format), with errors that name the file.

The official format is {"version", "data": [{"title", "paragraphs": [{"context",
"qas": [{"id", "question", "answers": [{"text", "answer_start"}], "is_impossible"?}]}]}]}.
The bundled sample (2 articles of SQuAD v1.1 dev, CC BY-SA 4.0) makes the
defaults work offline; any official file can be passed by path.

Example::

    articles = read_squad(bundled_squad_sample())
    sum(len(p.questions) for a in articles for p in a.paragraphs)  # 218
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from canao.errors import CanaoError

SAMPLES_DIR = Path(__file__).parent / "samples"


class DataError(CanaoError, ValueError):
    """A data file is missing or not in its standard format."""


@dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offset into the paragraph's context


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: tuple[Answer, ...]
    is_impossible: bool = False


@dataclass(frozen=True)
class Paragraph:
    context: str
    questions: tuple[Question, ...]


@dataclass(frozen=True)
class Article:
    title: str
    paragraphs: tuple[Paragraph, ...]


def bundled_squad_sample() -> Path:
    return SAMPLES_DIR / "squad-v1.1-dev-sample.json"


def _question(raw: dict, where: str) -> Question:
    try:
        answers = tuple(Answer(str(a["text"]), int(a["answer_start"])) for a in raw.get("answers", []))
        return Question(str(raw["id"]), str(raw["question"]), answers, bool(raw.get("is_impossible", False)))
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{where}: question entry lacks a valid field ({err!r}); expected id, question, answers.") from err


def read_squad(path: Path | str) -> list[Article]:
    """All articles of a SQuAD JSON file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found; pass a SQuAD v1.1/v2.0 JSON file.")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON at line {err.lineno}, column {err.colno} ({err.msg}).") from err
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise DataError(f"{path}: field `data` (a list of articles) is missing; not a SQuAD file.")
    articles = []
    for i, art in enumerate(raw["data"]):
        paragraphs = []
        for j, par in enumerate(art.get("paragraphs", [])):
            where = f"{path}: data[{i}].paragraphs[{j}]"
            if "context" not in par:
                raise DataError(f"{where}: field `context` is missing.")
            qs = tuple(_question(q, f"{where}.qas[{k}]") for k, q in enumerate(par.get("qas", [])))
            paragraphs.append(Paragraph(str(par["context"]), qs))
        articles.append(Article(str(art.get("title", f"article-{i}")), tuple(paragraphs)))
    return articles
