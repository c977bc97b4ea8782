"""Random-weight transformers models for parity tests (no hub access)."""

from __future__ import annotations

import torch


def perturb(model: torch.nn.Module, scale: float = 0.05) -> torch.nn.Module:
    """Add noise to every parameter so LayerNorm gains/biases are not the trivial 1/0."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model.eval()


def hf_bert(
    cls_name: str,
    *,
    hidden: int,
    layers: int,
    heads: int,
    ffn: int,
    vocab: int = 97,
    positions: int = 40,
    act: str = "gelu",
    num_labels: int = 2,
) -> torch.nn.Module:
    import transformers

    config = transformers.BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        max_position_embeddings=positions,
        hidden_act=act,
        num_labels=num_labels,
    )
    config._attn_implementation = "eager"
    return perturb(getattr(transformers, cls_name)(config))


def hf_gpt2(
    *, hidden: int, layers: int, heads: int, ffn: int | None = None, vocab: int = 101, positions: int = 48
) -> torch.nn.Module:
    import transformers

    config = transformers.GPT2Config(
        vocab_size=vocab,
        n_embd=hidden,
        n_layer=layers,
        n_head=heads,
        n_inner=ffn,
        n_positions=positions,
        bos_token_id=vocab - 1,
        eos_token_id=vocab - 1,
    )
    config._attn_implementation = "eager"
    return perturb(transformers.GPT2LMHeadModel(config))


def save_tiny_bert_with_tokenizer(path, cls_name: str = "BertModel", seed: int = 0, **dims):
    """A tiny random BERT saved in the HF layout at `path` with the default teacher's WordPiece tokenizer (so the
    bundled task samples tokenize): the teacher of the training, search and optimize tests."""
    import shutil

    from canao.models import teacher_dir

    dims = {"hidden": 32, "layers": 2, "heads": 4, "ffn": 64, "vocab": 30522, "positions": 128, **dims}
    torch.manual_seed(seed)  # the same weights whichever tests ran before
    hf_bert(cls_name, **dims).save_pretrained(path)
    shutil.copy(teacher_dir() / "tokenizer.json", path / "tokenizer.json")
    return path
