"""int8 / bf16 compressed checkpoints: hand-computed quantization, loading through every reader, bad files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from canao.cli import app
from canao.errors import CheckpointError, MissingDependencyError
from canao.models import load_pretrained
from canao.models import teacher as bundled
from canao.models.compressed import (
    INT8_FILE,
    SCALE_SUFFIX,
    compress_checkpoint,
    dequantize_rows,
    quantize_rows,
)
from tests.hf_factories import hf_bert, perturb


def test_quantize_rows_by_hand():
    w = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0], [0.3, 0.1, -0.127]])
    q, scale = quantize_rows(w)
    # row 0: peak 2 -> scale 2/127; 1/(2/127) = 63.5 rounds half to even = 64, 0.5 -> 31.75 -> 32
    assert scale.tolist() == pytest.approx([2 / 127, 1.0, 0.3 / 127])
    assert q.tolist() == [[64, -127, 32], [0, 0, 0], [127, 42, -54]]
    back = dequantize_rows(q, scale)
    assert (back - w).abs().max() <= (scale / 2).max() + 1e-7  # at most half a step per row


@pytest.fixture
def qa_dir(tmp_path):
    """A small BERT QA checkpoint (matrices large enough to be quantized) saved the Hugging Face way."""
    model = perturb(hf_bert("BertForQuestionAnswering", hidden=64, layers=2, heads=4, ffn=128, vocab=300))
    model.save_pretrained(tmp_path / "qa")
    return tmp_path / "qa"


def _logits(directory, ids):
    with torch.no_grad():
        return load_pretrained(directory).model(ids)


@pytest.mark.parametrize("scheme,ratio,tol", [("int8", 0.35, 0.05), ("bf16", 0.55, 0.05)])
def test_compressed_checkpoint_loads_close_to_the_original(tmp_path, qa_dir, scheme, ratio, tol):
    result = compress_checkpoint(qa_dir, tmp_path / "small", scheme)
    assert result.bytes_after < ratio * result.bytes_before
    ids = torch.randint(0, 300, (2, 12))
    ref, got = _logits(qa_dir, ids), _logits(tmp_path / "small", ids)
    for a, b in zip(ref, got):
        assert (a - b).abs().max() < tol * a.abs().max()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qa", "small"]  # no temp dirs left


def test_int8_file_layout(tmp_path, qa_dir):
    compress_checkpoint(qa_dir, tmp_path / "small", "int8")
    raw = load_file(str(tmp_path / "small" / INT8_FILE))
    word = "bert.embeddings.word_embeddings.weight"
    assert raw[word].dtype == torch.int8 and raw[word + SCALE_SUFFIX].shape == (300,)
    assert raw["qa_outputs.weight"].dtype == torch.float32  # 2 x 64: below MIN_QUANTIZED, kept float
    assert raw["bert.embeddings.LayerNorm.weight"].dtype == torch.float32
    assert (tmp_path / "small" / "config.json").exists() and not (tmp_path / "small" / "model.safetensors").exists()


def test_damaged_int8_files_are_refused(tmp_path, qa_dir):
    compress_checkpoint(qa_dir, tmp_path / "small", "int8")
    path = tmp_path / "small" / INT8_FILE
    raw = load_file(str(path))
    word = "bert.embeddings.word_embeddings.weight"
    save_file({k: v for k, v in raw.items() if k != word + SCALE_SUFFIX}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="compression None"):
        load_pretrained(tmp_path / "small")
    save_file(
        {k: v for k, v in raw.items() if k != word + SCALE_SUFFIX},
        str(path),
        metadata={"format": "pt", "canao_compression": "int8-rowwise-v1"},
    )
    with pytest.raises(CheckpointError, match="lacks its per-row scales"):
        load_pretrained(tmp_path / "small")
    path.write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="cannot be read as safetensors"):
        load_pretrained(tmp_path / "small")


def test_compress_refuses_bad_requests(tmp_path, qa_dir):
    with pytest.raises(CheckpointError, match="unknown weight compression"):
        compress_checkpoint(qa_dir, tmp_path / "x", "int4")
    with pytest.raises(CheckpointError, match="is the source checkpoint"):
        compress_checkpoint(qa_dir, qa_dir, "int8")
    with pytest.raises(CheckpointError, match="no config.json"):
        compress_checkpoint(tmp_path, tmp_path / "x", "int8")


def test_cli_compress_keeps_user_files(tmp_path, qa_dir):
    runner = CliRunner()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    refused = runner.invoke(app, ["compress", str(qa_dir), "--out", str(mine)])
    assert refused.exit_code != 0 and "--force" in refused.output
    assert (mine / "notes.txt").read_text() == "keep me"
    done = runner.invoke(app, ["compress", str(qa_dir), "--out", str(tmp_path / "c"), "--weights", "int8"])
    assert done.exit_code == 0, done.output
    assert "int8 weights" in " ".join(done.output.split())
    assert json.loads((tmp_path / "c" / "config.json").read_text()) == json.loads((qa_dir / "config.json").read_text())


def test_bundled_dir_names_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(bundled, "PRETRAINED_DIR", tmp_path)
    with pytest.raises(MissingDependencyError, match="bundled qa model is missing"):
        bundled.bundled_qa_dir()
    with pytest.raises(MissingDependencyError, match="no model for task 'ner'"):
        bundled.bundled_dir("ner")
    (tmp_path / "squad-minilm-qa").mkdir()
    (tmp_path / "squad-minilm-qa" / "config.json").write_text("{}")
    assert bundled.bundled_qa_dir() == tmp_path / "squad-minilm-qa"


def test_the_shipped_qa_model_answers_and_carries_its_card(tmp_path):
    """The real bundled model (when this build ships one): int8 weights load, answer SQuAD questions well
    above chance, and the model card names the data's license and the command that made it."""
    from canao.data.bundled import bundled_squad_sample
    from canao.train.evaluate import evaluate_checkpoint

    try:
        path = bundled.bundled_qa_dir()
    except MissingDependencyError:
        pytest.skip("this build ships no QA model yet (benchmarks/accuracy.py --stages bundle)")
    assert (path / "model.int8.safetensors").stat().st_size < 25_000_000
    card = (path / "README.md").read_text()
    assert "CC BY-SA 4.0" in card and "benchmarks/accuracy.py" in card
    sample = json.loads(bundled_squad_sample().read_text())
    article = sample["data"][0]
    paragraphs = []
    for paragraph in article["paragraphs"]:  # a few dozen questions: seconds
        paragraphs.append(paragraph)
        if sum(len(p["qas"]) for p in paragraphs) >= 24:
            break
    article = {**article, "paragraphs": paragraphs}
    small = tmp_path / "squad-small.json"
    small.write_text(json.dumps({**sample, "data": [article]}))
    metrics, _ = evaluate_checkpoint(path, "squad", small)
    assert metrics["total"] >= 20 and metrics["f1"] > 50, metrics
    shipped = json.loads((path / "metrics.json").read_text())
    assert all(m["f1"] > 50 for m in shipped["scores"].values())
