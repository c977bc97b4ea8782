"""Smoke test of the public surface in seconds: spec -> model -> compile -> run."""

from __future__ import annotations

import numpy as np
import torch

from canao import ArchSpec
from canao.compiler.build import build
from canao.compiler.lower import lower_model
from canao.models import build_model


def test_spec_to_compiled_model():
    spec = ArchSpec.uniform("encoder", vocab_size=40, max_positions=12, hidden=16, num_layers=1, heads=2)
    model = build_model(spec).eval()
    compiled = build(lower_model(model)).load()
    ids = np.array([1, 2, 3])
    with torch.no_grad():
        want = model(torch.tensor(ids[None])).last_hidden_state.numpy()
    assert np.abs(compiled.run(ids)["last_hidden_state"] - want).max() < 1e-4
