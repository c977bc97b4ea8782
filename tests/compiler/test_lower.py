"""Lowering: the unfused graph of a model computes what the PyTorch model computes (reference executor)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from canao.compiler.lower import lower_block, lower_model, lower_spec
from canao.compiler.reference import run_reference
from tests.compiler.graphs import DEC, ENC, encoder_inputs, run_decoder_twice, torch_model


@pytest.mark.parametrize("task", ["backbone", "classification", "qa"])
def test_encoder_matches_pytorch(task):
    model = torch_model(ENC, task)
    graph = lower_model(model)
    x = encoder_inputs(9)
    keep = (x["mask"] == 0).astype(np.int64)
    with torch.no_grad():
        out = model(
            torch.tensor(x["input_ids"][None].astype(np.int64)),
            torch.tensor(keep[None]),
            torch.tensor(x["token_type_ids"][None].astype(np.int64)),
        )
    got = run_reference(graph, x)[graph.outputs[0]]
    if task == "backbone":
        want = out.last_hidden_state[0].numpy()
    elif task == "qa":
        want = np.stack([out[0][0].numpy(), out[1][0].numpy()], axis=-1)
    else:
        want = out.numpy()
    assert np.abs(got.reshape(want.shape) - want).max() < 1e-4


def test_decoder_matches_pytorch_across_two_calls():
    model = torch_model(DEC, "lm")
    ids = np.random.default_rng(3).integers(0, DEC.vocab_size, 9).astype(np.int32)
    with torch.no_grad():
        want = model(torch.tensor(ids[None].astype(np.int64))).logits[0].numpy()
    got = run_decoder_twice(lower_model(model), ids, 4)
    assert np.abs(got - want).max() < 1e-4


def test_lower_spec_names_the_graph_and_blocks_take_hidden_states():
    weights = {k: v.detach().numpy() for k, v in torch_model(ENC, "backbone").state_dict().items()}
    graph = lower_spec(ENC, weights)
    assert graph.meta["kind"] == "encoder" and graph.meta["spec"]["hidden"] == ENC.hidden
    block = lower_block(ENC, weights, "layer")
    assert "hidden_in" in block.inputs and "input_ids" not in block.inputs
