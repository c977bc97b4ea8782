"""pack_weights: GEMM weights move into the panel layout; results are unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from canao.compiler.ir import verify
from canao.compiler.layout import pack_panels, unpack_panels
from canao.compiler.passes.fuse_epilogues import fuse_epilogues
from canao.compiler.passes.pack_weights import pack_weights
from tests.compiler.graphs import DEC, ENC, assert_same_outputs, lowered


@given(st.integers(1, 70), st.integers(1, 20), st.sampled_from([8, 16, 32]))
def test_pack_unpack_round_trip(n, k, nr):
    w = np.random.default_rng(n * k).normal(size=(n, k)).astype(np.float32)
    packed = pack_panels(w, nr)
    assert packed.shape == (-(-n // nr), k, nr)
    np.testing.assert_array_equal(unpack_panels(packed, n), w)
    if n % nr:  # the last panel is zero-padded past column n
        assert not packed[-1, :, n % nr:].any()


def test_gemms_read_packed_panels():
    before = fuse_epilogues(lowered(ENC))
    after = pack_weights(before.with_nodes(before.nodes, gemm_nr=8))
    verify(after)
    up = after.producer()["l0_act"]
    assert up.attr("packed") == "panel8" and up.inputs[1] == "layers.0.ffn.up.weight@panel8"
    assert after.types[up.inputs[1]].shape == (4, 20, 8)  # ceil(30/8) panels of K=20 x NR=8
    assert "layers.0.ffn.up.weight" not in after.constants


@pytest.mark.parametrize("spec,task", [(ENC, "qa"), (DEC, "lm")])
def test_numerics_unchanged(spec, task):
    before = fuse_epilogues(lowered(spec, task))
    assert_same_outputs(before, pack_weights(before))
