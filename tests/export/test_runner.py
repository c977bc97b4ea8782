"""canao-model-run, the C-only runner of an exported package: the same answers, labels, embeddings and greedy
generations as canao's Python apps on the same artifact; bad input exits 2 with a message, never a crash."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from canao.apps.generate import GenerationSettings, generate
from canao.apps.inference import classify, embed
from canao.apps.qa import QAOptions, answer_questions
from canao.compiler.artifact import load_artifact, write_artifact
from canao.data.bundled import bundled_squad_sample
from canao.device import host_simd
from canao.export.package import export_artifact
from canao.models import build_model
from canao.models.teacher import teacher_dir
from canao.models.tokenizer import load_tokenizer
from tests.apps.conftest import QA_SPEC
from tests.export.levels import PICKED_LEVEL, X86_VECTOR_HOSTS

pytestmark = [
    pytest.mark.skipif(shutil.which("make") is None or shutil.which("cc") is None, reason="needs cc and make"),
    pytest.mark.skipif(host_simd() not in X86_VECTOR_HOSTS, reason="linux-x86_64 runs AVX2 code"),
]
LABELS = {0: "negative", 1: "positive"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """(artifact, exported package) per task: tiny random encoders with the teacher's WordPiece tokenizer."""
    root = tmp_path_factory.mktemp("runner")
    tokenizer = load_tokenizer(teacher_dir())
    out = {}
    for seed, task in enumerate(("qa", "classification", "backbone")):
        torch.manual_seed(seed)
        model = build_model(QA_SPEC, task, **({"num_labels": 2} if task == "classification" else {}))
        weights = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        labels = LABELS if task == "classification" else None
        write_artifact(root / task, QA_SPEC, weights, task=task, labels=labels, tokenizer=tokenizer)
        out[task] = (root / task, export_artifact(root / task, "linux-x86_64", root / f"{task}-pkg").out)
    return out


def _run(pkg: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    exe = pkg / "build" / "canao-model-run"
    return subprocess.run([str(exe), "-d", str(pkg), *args], capture_output=True, text=True, input=stdin, timeout=120)


def _squad_cases() -> list[tuple[str, str]]:
    data = json.loads(bundled_squad_sample().read_text())
    cases = []
    for article in data["data"][:3]:
        for par in article["paragraphs"][:2]:
            cases += [(q["question"], par["context"]) for q in par["qas"][:2]]
    return cases


def test_qa_answers_equal_the_python_app(exported):
    art_path, pkg = exported["qa"]
    art = load_artifact(art_path, simd=PICKED_LEVEL)
    cases = [*_squad_cases(), ("Où est le café ?", "Le café est à Paris, près de la gare. 北京 🙂"), ("why?", "")]
    assert any(len(ctx) > 600 for _, ctx in cases)  # several windows at 64 positions
    for question, context in cases:
        want = answer_questions(art, [question], context, QAOptions()).answers[0]
        proc = _run(pkg, "qa", "-q", question, "-c", context)
        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout)
        if not want:
            assert got["answer"] is None
            continue
        assert got["answer"] == want[0].text, (question, got, want[0])
        assert got["score"] == pytest.approx(want[0].score, rel=1e-4, abs=1e-4)
        assert context.encode()[got["start"] : got["end"]].decode() == want[0].text


def test_classification_and_embedding_equal_the_python_apps(exported):
    cls_art = load_artifact(exported["classification"][0], simd=PICKED_LEVEL)
    emb_art = load_artifact(exported["backbone"][0], simd=PICKED_LEVEL)
    texts = ["a gripping, funny film", "naïve café 東京", "word " * 80]  # the last is cut at 64 positions
    for text in texts:
        got = json.loads(_run(exported["classification"][1], "classify", "-t", text).stdout)
        probs = classify(cls_art, text)
        assert got["label"] == max(probs, key=probs.__getitem__)
        logits = np.array(got["logits"])
        softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(softmax, [probs["negative"], probs["positive"]], rtol=1e-4, atol=1e-5)
        vec = json.loads(_run(exported["backbone"][1], "embed", "-t", "-", stdin=text).stdout)["embedding"]
        np.testing.assert_allclose(vec, embed(emb_art, [text])[0], rtol=1e-4, atol=1e-5)
    pair = json.loads(_run(exported["classification"][1], "classify", "-t", "a", "-p", "b").stdout)
    probs = classify(cls_art, "a", "b")
    assert pair["label"] == max(probs, key=probs.__getitem__)


@pytest.mark.parametrize(
    "args,words",
    [
        ([], "usage"),
        (["qa", "-q", "x"], "usage"),
        (["classify", "-t", "x"], "task is qa"),
        (["qa", "-q", "x", "-c", "y", "--max-length", "nope"], "bad option"),
        (["qa", "-q", "x", "-c", "y", "--doc-stride"], "needs a value"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(exported, args, words):
    proc = _run(exported["qa"][1], *args)
    assert proc.returncode == 2 and words in proc.stderr


def test_invalid_utf8_from_stdin_is_refused(exported):
    pkg = exported["qa"][1]
    exe = pkg / "build" / "canao-model-run"
    proc = subprocess.run(
        [str(exe), "-d", str(pkg), "qa", "-q", "-", "-c", "ctx"], input=b"bad \xff\xfe text", capture_output=True
    )
    assert proc.returncode == 2 and b"UTF-8" in proc.stderr


def test_a_missing_or_foreign_directory_is_named(tmp_path, exported):
    exe = exported["qa"][1] / "build" / "canao-model-run"
    proc = subprocess.run([str(exe), "-d", str(tmp_path), "qa", "-q", "a", "-c", "b"], capture_output=True, text=True)
    assert proc.returncode == 2 and "model.cfg" in proc.stderr
    (tmp_path / "model.cfg").write_text("task qa\n")
    (tmp_path / "weights.bin").write_bytes(b"junk")
    proc = subprocess.run([str(exe), "-d", str(tmp_path), "qa", "-q", "a", "-c", "b"], capture_output=True, text=True)
    assert proc.returncode == 2 and "not a canao weights file" in proc.stderr


@pytest.mark.slow  # exporting a byte-level BPE tokenizer probes every code point (~85 s)
def test_greedy_generation_equals_the_python_app(tmp_path):
    from canao.apps.bundled import bundled_artifact

    art = bundled_artifact("lm")
    pkg = export_artifact(art.path, "linux-x86_64", tmp_path / "lm").out
    for prompt in ("ROMEO:\nWhat light", "", "First Citizen: we are accounted poor"):
        want = generate(art, prompt, GenerationSettings(max_new_tokens=40))
        proc = _run(pkg, "generate", "-t", prompt, "-n", "40")
        assert proc.returncode == 0, proc.stderr
        lines = [json.loads(line) for line in proc.stdout.splitlines()]
        done = lines[-1]
        assert done["done"] and done["new_tokens"] == 40
        assert done["text"] == want.text
        assert "".join(line["text"] for line in lines[:-1]) == want.text  # the stream adds up to the text
    sampled = [
        json.loads(
            _run(
                pkg, "generate", "-t", "KING:", "-n", "20", "--temperature", "0.8", "--top-k", "40", "--seed", str(s)
            ).stdout.splitlines()[-1]
        )["ids"]
        for s in (1, 1, 2)
    ]
    assert sampled[0] == sampled[1] and sampled[0] != sampled[2]  # seeded


def test_bench_mode_reports_open_time_and_latency(exported):
    proc = _run(exported["classification"][1], "bench", "--tokens", "16", "--reps", "5")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["simd"] == PICKED_LEVEL and got["tokens"] == 16 and got["reps"] == 5
    assert 0 < got["min_ms"] <= got["median_ms"] <= got["p90_ms"] and got["open_ms"] > 0
    bad = _run(exported["classification"][1], "bench", "--tokens", "65")  # max positions 64
    assert bad.returncode == 2 and "--tokens" in bad.stderr


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")
@pytest.mark.parametrize("weights", ["junk", "missing"])
def test_error_paths_free_the_text_read_from_stdin(tmp_path, exported, weights):
    """The question comes from stdin (a 4 KB buffer), then opening the model fails: nothing may leak."""
    exe = exported["qa"][1] / "build" / "canao-model-run"
    (tmp_path / "model.cfg").write_text("task qa\n")
    if weights == "junk":
        (tmp_path / "weights.bin").write_bytes(b"junk")
    valgrind = ["valgrind", "-q", "--leak-check=full", "--errors-for-leak-kinds=definite", "--error-exitcode=99"]
    proc = subprocess.run(
        [*valgrind, str(exe), "-d", str(tmp_path), "qa", "-q", "-", "-c", "b"],
        input="who wrote it?",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]  # the runner's own error, not valgrind's 99
    assert "definitely lost" not in proc.stderr
