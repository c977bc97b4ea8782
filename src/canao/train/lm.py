"""A small GPT-2-style decoder trained from scratch: byte-level BPE on the corpus, then next-token training.

The text-generation app needs a decoder, and no GPT-2 weights exist
offline, so canao trains one: a byte-level BPE tokenizer (`tokenizers`,
as GPT-2's) fitted on the corpus, a decoder from a preset ArchSpec with
GPT-2's initialisation (normal(0, 0.02), residual projections scaled by
1/sqrt(2 * layers), Radford et al. 2019), and the shared training loop
(AdamW, warm-up/decay, checkpoints, resume) on packed blocks. The
validation split is the last 10% of the text.

Example::

    result = train_language_model(Path("input.txt"), Path("lm-out"), preset="tiny", max_steps=2000)
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from canao.arch import ArchSpec
from canao.data.text import pack_blocks, read_text
from canao.errors import SpecError
from canao.models.decoder import Decoder
from canao.models.hf import save_pretrained
from canao.train.finetune import FinetuneConfig, TrainResult, run_training
from canao.train.progress import Progress
from canao.train.tasks import LanguageModelTask, TaskData

END_OF_TEXT = "<|endoftext|>"
PRESETS: dict[str, dict] = {
    # name: (vocab, context, hidden, layers, heads, ffn); "tiny" is ~1.8M parameters (7 MB in fp32)
    "tiny": dict(vocab_size=4096, max_positions=256, hidden=128, num_layers=4, heads=4, ffn=512),
    "small": dict(vocab_size=8192, max_positions=512, hidden=256, num_layers=6, heads=8, ffn=1024),
}


def train_bpe(text: str, vocab_size: int):
    """A byte-level BPE tokenizer (GPT-2's scheme) fitted on `text`, with <|endoftext|> as a special token."""
    from tokenizers import ByteLevelBPETokenizer

    trainer = ByteLevelBPETokenizer(add_prefix_space=False)
    chunks = [text[i : i + 10_000] for i in range(0, len(text), 10_000)]
    trainer.train_from_iterator(chunks, vocab_size=vocab_size, min_frequency=2, special_tokens=[END_OF_TEXT])
    tokenizer = trainer._tokenizer
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def init_gpt2(model: Decoder) -> None:
    """GPT-2 initialisation: N(0, 0.02) weights, zero biases, residual projections / sqrt(2 L)."""
    std_residual = 0.02 / math.sqrt(2 * model.spec.num_layers)
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            std = std_residual if name.endswith(("attn.out", "ffn.down")) else 0.02
            nn.init.normal_(module.weight, 0.0, std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)


def preset_spec(preset: str, vocab_size: Optional[int] = None) -> ArchSpec:
    if preset not in PRESETS:
        raise SpecError(f"`preset` must be one of {sorted(PRESETS)}, but got {preset!r}.")
    p = dict(PRESETS[preset])
    if vocab_size is not None:
        p["vocab_size"] = vocab_size
    return ArchSpec.uniform("decoder", **p)


def train_language_model(
    text_path: Path,
    output_dir: Path,
    *,
    preset: str = "tiny",
    max_steps: int = 2000,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    progress: Optional[Progress] = None,
) -> TrainResult:
    """Fit BPE, train the preset decoder on the first 90% of the text, report validation perplexity, save."""
    text = read_text(text_path)
    spec_vocab = PRESETS.get(preset, {}).get("vocab_size", 4096)
    tokenizer = train_bpe(text, spec_vocab)
    spec = preset_spec(preset, tokenizer.get_vocab_size())
    ids = tokenizer.encode(text).ids
    split = int(0.9 * len(ids))
    block = spec.max_positions
    train = TaskData(list(pack_blocks(ids[:split], block)), [])
    valid = TaskData(list(pack_blocks(ids[split:], block)), [])
    torch.manual_seed(seed)
    model = Decoder(spec, dropout=0.1)
    init_gpt2(model)
    config = FinetuneConfig(
        "lm",
        output_dir,
        epochs=1e9,
        batch_size=batch_size,
        lr=lr,
        max_length=block,
        max_steps=max_steps,
        warmup_ratio=0.05,
        weight_decay=0.1,
        save_every=250,
        seed=seed,
    )
    task = LanguageModelTask()

    def evaluate() -> dict[str, float]:
        return task.score(model, valid)[0]

    result = run_training(
        config,
        {"model": model},
        list(model.named_parameters()),
        lambda batch: task.loss(task.forward(model, batch), batch),
        train,
        task.collate,
        evaluate,
        progress,
    )
    model.eval()
    save_pretrained(model, Path(output_dir) / "model", tokenizer=tokenizer)
    unigram = _unigram_perplexity(ids[:split], ids[split:], spec.vocab_size)
    summary = {
        "spec": spec.describe(),
        "train_tokens": split,
        "valid_tokens": len(ids) - split,
        "metrics": result.metrics,
        "steps": result.steps,
        "unigram_perplexity": unigram,
    }
    (Path(output_dir) / "metrics.json").write_text(json.dumps(summary, indent=2))
    return dataclasses.replace(result, metrics={**result.metrics, "unigram_perplexity": unigram})


def _unigram_perplexity(train: list[int], valid: list[int], vocab: int) -> float:
    """Perplexity of add-one unigram frequencies: the floor a trained model must beat."""
    counts = np.bincount(np.asarray(train), minlength=vocab).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(np.exp(-logp[np.asarray(valid)].mean()))
