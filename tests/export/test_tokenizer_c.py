"""canao's C WordPiece tokenizer gives the ids (and offsets) of the `tokenizers` library on >= 10,000 texts
from the bundled data (SQuAD, SST-2, QNLI, tinyshakespeare), their upper-cased and accented variants,
Unicode (accents, CJK, emoji, controls, random code points from every plane), special tokens in the
text, and empty or whitespace-only input; and refuses bad input and damaged files with an error code."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from canao.data.bundled import SAMPLES_DIR, bundled_squad_sample
from canao.export.tokenizer_data import write_tokenizer_data
from canao.models.teacher import teacher_dir
from canao.models.tokenizer import load_tokenizer

C_DIR = Path(__file__).resolve().parents[2] / "src" / "canao" / "export" / "c"
CC = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="needs a C compiler")


def corpus() -> list[str]:
    texts: list[str] = []
    squad = json.loads(bundled_squad_sample().read_text())
    for article in squad["data"]:
        for par in article["paragraphs"]:
            texts.append(par["context"])
            texts += [s.strip() + "." for s in par["context"].split(". ") if s.strip()]
            texts += [q["question"] for q in par["qas"]]
            texts += [a["text"] for q in par["qas"] for a in q["answers"]]
    for name in ("sst2-dev.tsv", "sst2-train-sample.tsv", "qnli-dev-sample.tsv"):
        for line in (SAMPLES_DIR / name).read_text(encoding="utf-8").splitlines()[1:]:
            texts += [f for f in line.split("\t") if f and not f.isdigit()]
    texts += (SAMPLES_DIR / "tinyshakespeare-sample.txt").read_text(encoding="utf-8").splitlines()
    variants = [t.upper() for t in texts[:1500]] + [t.replace("e", "é").replace("a", "à") for t in texts[:1500]]
    rng = np.random.default_rng(0)
    planes = [(0x20, 0x7F), (0x80, 0x800), (0x800, 0xD800), (0xE000, 0x10000), (0x10000, 0x30000), (0xE0000, 0x110000)]
    random_texts = []
    for _ in range(1500):
        lo, hi = planes[rng.integers(len(planes))]
        random_texts.append("".join(chr(int(c)) for c in rng.integers(lo, hi, size=rng.integers(1, 40))))
    special = [
        "",
        " ",
        "\t\n  \r",
        "\u3000",
        "\u00a0x\u00a0",
        "Héllò Wörld ÅÇÉ",
        "naïve café résumé",
        "İstanbul ǅ ß ẞ Σ ς",
        "北京大学 東京 한국어 中文字符测试",
        "emoji 🙂🥲🫠👩‍👩‍👧 ✨",
        "tab\tsep\x00nul\x1fctl\u200bzw\u200d",
        "[CLS] a [SEP] b [MASK]",
        "a[SEP]b [sep] [UNK]x",
        "don't stop--now!!! (really?)",
        "e\u0301 vs é, A\u030a vs Å",
        "\ufffd bad \ufffd",
        "x" * 150,
        "supercalifragilisticexpialidocious" * 4,
        "1,234.56 $7 €8 £9 ¥10 ½ ² ⅷ",
    ]
    return texts + variants + random_texts + special


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, object]:
    out = tmp_path_factory.mktemp("ctok")
    tok = load_tokenizer(teacher_dir())
    info = write_tokenizer_data(tok, out / "tokenizer.bin")
    assert info["bytes"] < 2_000_000  # vocabulary (~230 KB) + probed tables
    exe = out / "tokdrv"
    sources = [str(C_DIR / "canao_tokenizer.c"), str(Path(__file__).parent / "tok_driver.c")]
    strict = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-I", str(C_DIR)]
    subprocess.run([CC, "-O2", *strict, *sources, "-o", str(exe)], check=True)
    sanitizers = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    subprocess.run([CC, *sanitizers, *strict, *sources, "-o", str(out / "tokdrv-asan")], check=True)
    return out / "tokenizer.bin", exe, tok


def run_c(exe: Path, data: Path, texts: list[str], tmp: Path) -> list[tuple[int, list[tuple[int, int, int]]]]:
    blob = b"".join(struct.pack("<I", len(b)) + b for b in (t.encode("utf-8", "surrogatepass") for t in texts))
    (tmp / "texts.bin").write_bytes(blob)
    raw = subprocess.run([str(exe), str(data), str(tmp / "texts.bin")], capture_output=True, check=True).stdout
    values = np.frombuffer(raw, dtype="<i4")
    out, i = [], 0
    for _ in texts:
        count = int(values[i])
        i += 1
        triples = values[i : i + 3 * max(count, 0)].reshape(-1, 3).tolist()
        i += 3 * max(count, 0)
        out.append((count, [tuple(x) for x in triples]))
    return out


def test_ids_and_offsets_equal_the_tokenizers_library(built, tmp_path):
    data, exe, tok = built
    texts = corpus()
    assert len(texts) >= 10_000
    got = run_c(exe, data, texts, tmp_path)
    mismatches = []
    for text, (count, triples) in zip(texts, got):
        enc = tok.encode(text, add_special_tokens=False)
        ids = [t[0] for t in triples]
        if count < 0 or ids != enc.ids:
            mismatches.append((text[:60], enc.ids[:12], ids[:12]))
            continue
        raw = text.encode("utf-8")
        for (_, s, e), (cs, ce) in zip(triples, enc.offsets):  # byte offsets -> the library's char offsets
            if (len(raw[:s].decode("utf-8")), len(raw[:e].decode("utf-8"))) != (cs, ce):
                mismatches.append((text[:60], "offsets", (s, e), (cs, ce)))
                break
    assert not mismatches, f"{len(mismatches)} of {len(texts)} texts differ, e.g. {mismatches[:5]}"


def test_sanitizers_find_nothing_on_the_corpus(built, tmp_path):
    data, exe, tok = built
    texts = corpus()[::4]
    got = run_c(exe.with_name("tokdrv-asan"), data, texts, tmp_path)  # check=True: ASan/UBSan exit non-zero
    assert [ids for _, ids in [(c, [t[0] for t in triples]) for c, triples in got]] == [
        tok.encode(t, add_special_tokens=False).ids for t in texts
    ]


def test_bad_text_and_damaged_files_give_error_codes(built, tmp_path):
    data, exe, _ = built
    exe = exe.with_name("tokdrv-asan")
    (tmp_path / "texts.bin").write_bytes(struct.pack("<I", 3) + b"a\xffb" + struct.pack("<I", 2) + b"\xed\xa0")
    raw = subprocess.run([str(exe), str(data), str(tmp_path / "texts.bin")], capture_output=True, check=True).stdout
    assert np.frombuffer(raw, dtype="<i4").tolist() == [-4, -4]  # CANAO_TOK_EUTF8 (invalid byte, a surrogate)
    whole = data.read_bytes()
    for name, damaged in (("truncated", whole[: len(whole) // 2]), ("foreign", b"PK\x03\x04" + whole[4:])):
        (tmp_path / name).write_bytes(damaged)
        result = subprocess.run([str(exe), str(tmp_path / name), str(tmp_path / "texts.bin")], capture_output=True)
        assert result.returncode == 3 and b"not a canao tokenizer.bin" in result.stderr


@pytest.mark.slow  # probing the byte-level classes of all 1.1M code points takes ~1-2 minutes
def test_byte_level_bpe_ids_equal_the_tokenizers_library(tmp_path):
    from canao.models.teacher import bundled_decoder_dir

    tok = load_tokenizer(bundled_decoder_dir())
    info = write_tokenizer_data(tok, tmp_path / "tokenizer.bin")
    assert info["merges"] == 3839
    exe = tmp_path / "tokdrv-asan"
    sources = [str(C_DIR / "canao_tokenizer.c"), str(Path(__file__).parent / "tok_driver.c")]
    subprocess.run(
        [
            CC,
            "-O1",
            "-g",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-I",
            str(C_DIR),
            *sources,
            "-o",
            str(exe),
        ],
        check=True,
    )
    texts = corpus()
    got = run_c(exe, tmp_path / "tokenizer.bin", texts, tmp_path)
    mismatches = [
        (text[:60], tok.encode(text).ids[:12], [t[0] for t in triples][:12])
        for text, (_, triples) in zip(texts, got)
        if [t[0] for t in triples] != tok.encode(text).ids
    ]
    assert not mismatches, f"{len(mismatches)} of {len(texts)} texts differ, e.g. {mismatches[:5]}"
