"""Encoder parity with transformers' BERT: random configs, the real MiniLM weights, heterogeneous layers."""

from __future__ import annotations

import pytest
import torch

from canao.arch import ArchSpec, LayerSpec
from canao.models import build_model, load_pretrained, load_teacher
from tests.hf_factories import hf_bert, perturb

TOL = 1e-4
# (hidden, layers, heads, ffn, activation): shapes include odd head dims and a tanh-GELU variant.
SHAPES = [(32, 2, 4, 64, "gelu"), (48, 3, 3, 80, "gelu_new"), (60, 1, 5, 36, "gelu")]


def _inputs(vocab: int, batch: int = 2, seq: int = 11) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[1, seq - 4 :] = 0  # the second row is padded
    types = torch.zeros(batch, seq, dtype=torch.long)
    types[:, seq // 2 :] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def _max_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    if mask is not None:  # padded positions are undefined in both implementations
        a, b = a[mask.bool()], b[mask.bool()]
    return float((a - b).abs().max())


@pytest.mark.parametrize("hidden,layers,heads,ffn,act", SHAPES)
def test_backbone_matches_bert_model(tmp_path, hidden, layers, heads, ffn, act):
    hf = hf_bert("BertModel", hidden=hidden, layers=layers, heads=heads, ffn=ffn, act=act)
    hf.save_pretrained(tmp_path)
    ours = load_pretrained(tmp_path)
    assert ours.task == "backbone" and ours.spec.layers[0] == LayerSpec(heads, hidden // heads, ffn)
    x = _inputs(97)
    with torch.no_grad():
        want, got = hf(**x), ours.model(**x)
    assert _max_diff(got.last_hidden_state, want.last_hidden_state, x["attention_mask"]) < TOL
    assert _max_diff(got.pooled, want.pooler_output) < TOL


@pytest.mark.parametrize("hidden,layers,heads,ffn,act", SHAPES)
def test_task_heads_match(tmp_path, hidden, layers, heads, ffn, act):
    x = _inputs(97)
    cls = hf_bert(
        "BertForSequenceClassification", hidden=hidden, layers=layers, heads=heads, ffn=ffn, act=act, num_labels=3
    )
    cls.save_pretrained(tmp_path / "cls")
    ours = load_pretrained(tmp_path / "cls")
    assert ours.task == "classification"
    with torch.no_grad():
        assert _max_diff(ours.model(**x), cls(**x).logits) < TOL
    qa = hf_bert("BertForQuestionAnswering", hidden=hidden, layers=layers, heads=heads, ffn=ffn, act=act)
    qa.save_pretrained(tmp_path / "qa")
    ours = load_pretrained(tmp_path / "qa")
    with torch.no_grad():
        start, end = ours.model(**x)
        want = qa(**x)
    assert _max_diff(start, want.start_logits, x["attention_mask"]) < TOL
    assert _max_diff(end, want.end_logits, x["attention_mask"]) < TOL


def test_minilm_teacher_matches_transformers():
    from transformers import BertModel

    teacher = load_teacher()
    hf = BertModel.from_pretrained(str(teacher.directory), attn_implementation="eager").eval()
    texts = ["The compiler fuses layers.", "Real-time BERT on a phone needs a small model and a fast compiler."]
    enc = [teacher.tokenizer.encode(t) for t in texts]
    seq = max(len(e.ids) for e in enc)
    ids = torch.tensor([e.ids + [0] * (seq - len(e.ids)) for e in enc])
    mask = torch.tensor([[1] * len(e.ids) + [0] * (seq - len(e.ids)) for e in enc])
    with torch.no_grad():
        got = teacher.model(ids, mask, output_hidden_states=True)
        want = hf(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    for ours, theirs in zip(got.hidden_states, want.hidden_states):
        assert _max_diff(ours, theirs, mask) < TOL
    assert _max_diff(got.pooled, want.pooler_output) < TOL


def _hf_layer_like(hidden: int, layer: LayerSpec, eps: float) -> torch.nn.Module:
    """A transformers BertLayer re-shaped to `layer` (attention width may differ from hidden)."""
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer

    config = BertConfig(hidden_size=hidden, num_attention_heads=1, intermediate_size=layer.ffn, layer_norm_eps=eps)
    config._attn_implementation = "eager"
    hf = BertLayer(config)
    sa = hf.attention.self
    sa.num_attention_heads, sa.attention_head_size = layer.heads, layer.head_dim
    sa.all_head_size, sa.scaling = layer.attn_width, layer.head_dim**-0.5
    for name in ("query", "key", "value"):
        setattr(sa, name, torch.nn.Linear(hidden, layer.attn_width))
    hf.attention.output.dense = torch.nn.Linear(layer.attn_width, hidden)
    return perturb(hf)


def test_heterogeneous_encoder_layer_by_layer():
    spec = ArchSpec("encoder", 97, 40, 36, (LayerSpec(3, 16, 50), LayerSpec(5, 8, 20), LayerSpec(1, 7, 129)))
    model = perturb(build_model(spec))
    x = _inputs(97)
    with torch.no_grad():
        out = model(**x, output_hidden_states=True)
        additive = (1.0 - x["attention_mask"][:, None, None, :].float()) * torch.finfo(torch.float32).min
        for i, (ours, layer) in enumerate(zip(model.layers, spec.layers)):
            hf = _hf_layer_like(spec.hidden, layer, spec.norm_eps)
            hf.load_state_dict(
                {
                    "attention.self.query.weight": ours.attn.q.weight,
                    "attention.self.query.bias": ours.attn.q.bias,
                    "attention.self.key.weight": ours.attn.k.weight,
                    "attention.self.key.bias": ours.attn.k.bias,
                    "attention.self.value.weight": ours.attn.v.weight,
                    "attention.self.value.bias": ours.attn.v.bias,
                    "attention.output.dense.weight": ours.attn.out.weight,
                    "attention.output.dense.bias": ours.attn.out.bias,
                    "attention.output.LayerNorm.weight": ours.attn_norm.weight,
                    "attention.output.LayerNorm.bias": ours.attn_norm.bias,
                    "intermediate.dense.weight": ours.ffn.up.weight,
                    "intermediate.dense.bias": ours.ffn.up.bias,
                    "output.dense.weight": ours.ffn.down.weight,
                    "output.dense.bias": ours.ffn.down.bias,
                    "output.LayerNorm.weight": ours.ffn_norm.weight,
                    "output.LayerNorm.bias": ours.ffn_norm.bias,
                }
            )
            want = hf(out.hidden_states[i], attention_mask=additive)
            want = want[0] if isinstance(want, tuple) else want
            assert _max_diff(out.hidden_states[i + 1], want, x["attention_mask"]) < TOL, f"layer {i}"
