"""Block graphs (embed, layer, head) run in turn compute the whole model."""

from __future__ import annotations

import numpy as np

from canao.compiler.lower import lower_block, lower_model
from canao.compiler.reference import run_reference
from tests.compiler.graphs import DEC, ENC, encoder_inputs, torch_model


def _weights(model):
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def test_encoder_blocks_compose():
    model = torch_model(ENC, "backbone")
    x = encoder_inputs()
    want = run_reference(lower_model(model), x)
    w = _weights(model)
    (h,) = run_reference(lower_block(ENC, w, "embed"), x).values()
    for i in range(ENC.num_layers):
        (h,) = run_reference(lower_block(ENC, w, "layer", layer=i), {"hidden_in": h, "mask": x["mask"]}).values()
    got = run_reference(lower_block(ENC, w, "head"), {"hidden_in": h})
    assert np.abs(h - want["l1_out"]).max() < 1e-5
    assert np.abs(got["pooled"] - want["pooled"]).max() < 1e-5


def test_decoder_blocks_compose():
    model = torch_model(DEC, "lm")
    ids = np.array([3, 9, 27, 4], np.int32)
    want = run_reference(
        lower_model(model),
        {
            "input_ids": ids,
            **{
                f"cache_{kv}{i}": np.zeros((24, layer.attn_width), np.float32)
                for i, layer in enumerate(DEC.layers)
                for kv in "kv"
            },
        },
    )
    w = _weights(model)
    (h,) = run_reference(lower_block(DEC, w, "embed"), {"input_ids": ids}).values()
    for i, layer in enumerate(DEC.layers):
        caches = {f"cache_{kv}{i}": np.zeros((24, layer.attn_width), np.float32) for kv in "kv"}
        (h,) = run_reference(lower_block(DEC, w, "layer", layer=i), {"hidden_in": h, **caches}).values()
    (logits,) = run_reference(lower_block(DEC, w, "head"), {"hidden_in": h}).values()
    assert np.abs(logits - want["logits"]).max() < 1e-4
