"""ArchSpec and SearchSpace: validation, JSON round-trip, parameter and FLOP counts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from canao.arch import ArchSpec, LayerSpec, SearchSpace
from canao.errors import CanaoError, SpecError

MINILM = ArchSpec.uniform("encoder", vocab_size=30522, max_positions=512, hidden=384, num_layers=6, heads=12)

layer_specs = st.builds(LayerSpec, st.integers(1, 16), st.integers(1, 96), st.integers(1, 4096))
arch_specs = st.builds(
    ArchSpec,
    st.sampled_from(["encoder", "decoder"]),
    st.integers(1, 60000),
    st.integers(1, 2048),
    st.integers(1, 1024),
    st.lists(layer_specs, min_size=1, max_size=12).map(tuple),
)


@given(arch_specs)
def test_json_round_trip(spec):
    assert ArchSpec.from_json(spec.to_json()) == spec
    assert hash(ArchSpec.from_json(spec.to_json())) == hash(spec)


def test_family_defaults():
    assert MINILM.type_vocab_size == 2 and MINILM.norm_eps == 1e-12 and MINILM.activation == "gelu"
    dec = ArchSpec.uniform("decoder", vocab_size=50257, max_positions=1024, hidden=768, num_layers=12, heads=12)
    assert dec.type_vocab_size == 0 and dec.norm_eps == 1e-5 and dec.activation == "gelu_tanh"


def test_minilm_and_gpt2_parameter_counts():
    assert MINILM.num_params() == 22_713_216  # all-MiniLM-L6-v2's published size (22.7M)
    gpt2 = ArchSpec.uniform("decoder", vocab_size=50257, max_positions=1024, hidden=768, num_layers=12, heads=12)
    assert gpt2.num_params() == 124_439_808  # GPT-2 small, tied head


def test_flops_formula():
    spec = ArchSpec("encoder", 10, 8, 4, (LayerSpec(2, 3, 5),))
    t, h, a, f = 7, 4, 6, 5
    expected = 2 * (t * h * 3 * a + t * a * h + 2 * t * t * a + 2 * t * h * f)
    assert spec.flops(t) == expected
    # BERT-base at 128 tokens is ~22.5 GFLOPs (2 x 11.2 GMACs), as usually quoted.
    base = ArchSpec.uniform("encoder", vocab_size=30522, max_positions=512, hidden=768, num_layers=12, heads=12)
    assert 21e9 < base.flops(128) < 23e9


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"hidden": 0}, "hidden >= 1"),
        ({"kind": "seq2seq"}, "kind"),
        ({"vocab_size": 2.5}, "vocab_size"),
        ({"layers": ()}, "layers"),
        ({"activation": "relu"}, "activation"),
        ({"norm_eps": 0.0}, "norm_eps"),
        ({"version": 99}, "version"),
        ({"max_positions": True}, "max_positions"),
    ],
)
def test_invalid_fields_are_named(changes, field):
    with pytest.raises(SpecError, match=field):
        MINILM.replace(**changes)


def test_invalid_layer_and_json():
    with pytest.raises(SpecError, match="heads >= 1"):
        LayerSpec(0, 32, 1536)
    with pytest.raises(SpecError, match="no field"):
        ArchSpec.from_dict({**MINILM.to_dict(), "depth": 3})
    with pytest.raises(SpecError, match=r"layers\[0\]"):
        ArchSpec.from_dict({**MINILM.to_dict(), "layers": [{"heads": 1}]})
    with pytest.raises(CanaoError, match="does not parse"):
        ArchSpec.from_json("{oops")
    with pytest.raises(SpecError, match="decoder"):
        ArchSpec("decoder", 10, 8, 4, (LayerSpec(1, 4, 8),), type_vocab_size=2)


def test_search_space_samples_are_members_and_seeded():
    space = SearchSpace("encoder", 30522, 512, (256, 384), (2, 4, 6), (4, 8, 12), 32, (512, 1024, 1536))
    assert space.largest() == MINILM
    a = [space.sample(np.random.default_rng(3)) for _ in range(3)]
    b = [space.sample(np.random.default_rng(3)) for _ in range(3)]
    assert a == b and all(space.contains(s) for s in a)
    assert SearchSpace.from_json(space.to_json()) == space
    with pytest.raises(SpecError, match="ffn_choices"):
        SearchSpace("encoder", 30522, 512, (256,), (2,), (4,), 32, ())
