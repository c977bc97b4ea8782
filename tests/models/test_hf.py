"""Save -> load round-trips through transformers, pytorch_model.bin, and bad checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from canao.arch import ArchSpec, LayerSpec
from canao.errors import CheckpointError
from canao.models import build_model, load_pretrained, save_pretrained
from tests.hf_factories import hf_bert, perturb

TOL = 1e-5


def _ids(vocab: int, seq: int = 9) -> torch.Tensor:
    return torch.randint(0, vocab, (2, seq))


@pytest.mark.parametrize(
    "task,hf_class",
    [
        ("backbone", "BertModel"),
        ("classification", "BertForSequenceClassification"),
        ("qa", "BertForQuestionAnswering"),
    ],
)
def test_bert_save_loads_in_transformers(tmp_path, task, hf_class):
    import transformers

    spec = ArchSpec.uniform("encoder", vocab_size=50, max_positions=16, hidden=24, num_layers=2, heads=3, ffn=40)
    model = perturb(build_model(spec, task, num_labels=3))
    save_pretrained(
        model, tmp_path / "ckpt", labels={0: "neg", 1: "neu", 2: "pos"} if task == "classification" else None
    )
    hf = getattr(transformers, hf_class).from_pretrained(tmp_path / "ckpt", attn_implementation="eager").eval()
    ids = _ids(50)
    with torch.no_grad():
        ours, theirs = model(ids), hf(input_ids=ids)
    if task == "backbone":
        assert float((ours.last_hidden_state - theirs.last_hidden_state).abs().max()) < TOL
    elif task == "classification":
        assert float((ours - theirs.logits).abs().max()) < TOL
        assert hf.config.id2label[2] == "pos"
    else:
        assert float((ours[0] - theirs.start_logits).abs().max()) < TOL
    again = load_pretrained(tmp_path / "ckpt")
    assert again.spec == spec and again.task == task
    for (k, a), b in zip(model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_gpt2_save_loads_in_transformers(tmp_path):
    from transformers import GPT2LMHeadModel

    spec = ArchSpec.uniform("decoder", vocab_size=60, max_positions=20, hidden=32, num_layers=2, heads=4, ffn=72)
    model = perturb(build_model(spec, "lm"))
    save_pretrained(model, tmp_path / "gpt")
    hf = GPT2LMHeadModel.from_pretrained(tmp_path / "gpt", attn_implementation="eager").eval()
    ids = _ids(60)
    with torch.no_grad():
        assert float((model(ids).logits - hf(ids).logits).abs().max()) < TOL
    assert load_pretrained(tmp_path / "gpt").spec == spec


def test_heterogeneous_spec_round_trips_through_canao_arch(tmp_path):
    spec = ArchSpec("encoder", 50, 16, 24, (LayerSpec(2, 8, 30), LayerSpec(4, 5, 11)))
    model = perturb(build_model(spec, "qa"))
    save_pretrained(model, tmp_path / "het")
    again = load_pretrained(tmp_path / "het")
    assert again.spec == spec and again.task == "qa"
    ids = _ids(50)
    with torch.no_grad():
        assert torch.equal(model(ids)[0], again.model(ids)[0])


def test_pytorch_model_bin_is_read(tmp_path):
    hf = hf_bert("BertModel", hidden=16, layers=1, heads=2, ffn=20)
    hf.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    ours = load_pretrained(tmp_path)
    ids = _ids(97)
    with torch.no_grad():
        assert float((ours.model(ids).last_hidden_state - hf(input_ids=ids).last_hidden_state).abs().max()) < 1e-4


def test_backbone_checkpoint_gets_a_fresh_task_head(tmp_path):
    hf_bert("BertModel", hidden=16, layers=1, heads=2, ffn=20).save_pretrained(tmp_path)
    loaded = load_pretrained(tmp_path, task="classification")
    assert loaded.task == "classification" and loaded.model.classifier.out_features == 2


def test_save_is_atomic_and_replaces(tmp_path):
    spec = ArchSpec.uniform("encoder", vocab_size=50, max_positions=16, hidden=8, num_layers=1, heads=2)
    save_pretrained(build_model(spec), tmp_path / "a")
    save_pretrained(build_model(spec.replace(hidden=12)), tmp_path / "a")
    assert load_pretrained(tmp_path / "a").spec.hidden == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no temp or backup dirs left


# ------------------------------------------------------------- bad input
@pytest.fixture
def bert_dir(tmp_path):
    hf_bert("BertModel", hidden=16, layers=1, heads=2, ffn=20).save_pretrained(tmp_path / "bert")
    return tmp_path / "bert"


def test_missing_directory_and_files(tmp_path, bert_dir):
    with pytest.raises(CheckpointError, match="directory not found"):
        load_pretrained(tmp_path / "nope")
    (bert_dir / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights found"):
        load_pretrained(bert_dir)
    (bert_dir / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json: file not found"):
        load_pretrained(bert_dir)


def test_unknown_model_type_names_file_and_field(bert_dir):
    config = json.loads((bert_dir / "config.json").read_text())
    config["model_type"] = "t5"
    (bert_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config\.json: field `model_type`='t5'"):
        load_pretrained(bert_dir)


def test_shape_mismatch_names_file_and_tensor(bert_dir):
    config = json.loads((bert_dir / "config.json").read_text())
    config["intermediate_size"] = 24
    (bert_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        CheckpointError,
        match=r"model\.safetensors: tensor `encoder\.layer\.0\.intermediate\.dense\.(weight|bias)` "
        r".* has shape \(20.*field `intermediate_size`",
    ):
        load_pretrained(bert_dir)


def test_corrupt_weights_and_config(bert_dir):
    (bert_dir / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_pretrained(bert_dir)


def test_truncated_safetensors(bert_dir):
    data = (bert_dir / "model.safetensors").read_bytes()
    (bert_dir / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_pretrained(bert_dir)


def test_missing_config_field(bert_dir):
    config = json.loads((bert_dir / "config.json").read_text())
    del config["hidden_size"]
    (bert_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="field `hidden_size` is missing"):
        load_pretrained(bert_dir)
