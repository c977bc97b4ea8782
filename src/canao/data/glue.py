"""GLUE TSV readers for SST-2, MRPC and QNLI, in the files' official layouts.

SST-2: header `sentence<TAB>label`. MRPC: header `Quality, #1 ID, #2 ID,
#1 String, #2 String` (the GLUE script writes a UTF-8 BOM). QNLI: header
`index, question, sentence, label` with labels entailment / not_entailment
(mapped to 0 / 1 as GLUE does). Test files without labels read with label
None. Quotes are text, not CSV quoting (GLUE files contain unbalanced ").
A malformed line raises DataError naming the file and line number.

Example::

    examples = read_glue("sst2", Path("SST-2/dev.tsv"))
    examples[0].text_a, examples[0].label
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from canao.errors import DataError
from canao.storage import read_user_text

GLUE_TASKS = ("sst2", "mrpc", "qnli")
QNLI_LABELS = {"entailment": 0, "not_entailment": 1}


@dataclass(frozen=True)
class PairExample:
    text_a: str
    text_b: Optional[str]
    label: Optional[int]
    guid: str


def _columns(task: str, header: list[str], path: Path) -> tuple[int, Optional[int], Optional[int]]:
    """Indices of text_a, text_b and label in this file's header."""
    names = {
        "sst2": ("sentence", None, "label"),
        "mrpc": ("#1 String", "#2 String", "Quality"),
        "qnli": ("question", "sentence", "label"),
    }[task]
    try:
        a = header.index(names[0])
        b = header.index(names[1]) if names[1] else None
    except ValueError as err:
        raise DataError(
            f"{path}:1: header {header} lacks column {err.args[0].split()[0]}; not a GLUE {task} file."
        ) from err
    label = header.index(names[2]) if names[2] in header else None  # test files have no label
    return a, b, label


def _label(task: str, raw: str, where: str) -> int:
    if task == "qnli":
        if raw not in QNLI_LABELS:
            raise DataError(f"{where}: label {raw!r} is not one of {sorted(QNLI_LABELS)}.")
        return QNLI_LABELS[raw]
    if raw not in ("0", "1"):
        raise DataError(f"{where}: label {raw!r} is not 0 or 1.")
    return int(raw)


def read_glue(task: str, path: Path | str) -> list[PairExample]:
    if task not in GLUE_TASKS:
        raise DataError(f"`task` must be one of {GLUE_TASKS}, but got {task!r}.")
    path = Path(path)
    lines = read_user_text(path, f"a GLUE {task} TSV file", DataError, encoding="utf-8-sig").splitlines()
    if not lines:
        raise DataError(f"{path}: empty file; a GLUE TSV file starts with a header line.")
    header = [h.strip() for h in lines[0].split("\t")]
    col_a, col_b, col_label = _columns(task, header, path)
    examples = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        where = f"{path}:{number}"
        if len(fields) != len(header):
            raise DataError(f"{where}: {len(fields)} tab-separated fields, but the header has {len(header)}.")
        label = None if col_label is None else _label(task, fields[col_label].strip(), where)
        text_b = None if col_b is None else fields[col_b].strip()
        examples.append(PairExample(fields[col_a].strip(), text_b, label, f"{path.name}-{number}"))
    return examples
