"""Candidates: decision vectors decode to members, members encode canonically, files round-trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from canao.arch import SearchSpace
from canao.errors import SpecError
from canao.search.candidates import Candidate, CandidateSpace, load_candidate_space
from canao.search.space import default_encoder_space

SPACE = CandidateSpace(default_encoder_space(), precisions=("fp32", "int8"), seq_lens=(64, 128))


@given(st.integers(0, 2**32 - 1))
def test_every_vector_is_a_member_and_encodes_back(seed):
    decisions = SPACE.random_decisions(np.random.default_rng(seed))
    candidate = SPACE.decode(decisions)
    assert SPACE.contains(candidate)
    canonical = SPACE.encode(candidate)
    assert SPACE.decode(canonical) == candidate and SPACE.canonical(canonical) == canonical
    depth = candidate.spec.num_layers
    assert canonical[: 2 + 2 * depth] == tuple(decisions[: 2 + 2 * depth])  # the used decisions are kept


def test_counts_names_and_size():
    counts = SPACE.choice_counts()
    assert len(counts) == len(SPACE.decision_names()) == 2 + 2 * 6 + 2
    assert counts[:2] == (3, 5) and counts[-2:] == (2, 2)
    assert SPACE.size() == 3 * sum(16**depth for depth in (2, 3, 4, 5, 6)) * 4
    assert SPACE.smallest().spec.num_layers == 2 and SPACE.smallest().spec.hidden == 256


def test_bad_vectors_and_foreign_members_are_refused():
    with pytest.raises(SpecError, match="do not fit"):
        SPACE.decode((0,) * 3)
    with pytest.raises(SpecError, match="do not fit"):
        SPACE.decode((9,) + (0,) * 15)
    other = Candidate(SPACE.smallest().spec, seq_len=32)
    with pytest.raises(SpecError, match="not a member"):
        SPACE.encode(other)


def test_file_round_trip_and_defaults(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps(SPACE.to_dict()))
    assert load_candidate_space(tmp_path / "s.json") == SPACE
    plain = json.loads(default_encoder_space().to_json())
    (tmp_path / "plain.json").write_text(json.dumps(plain))
    loaded = load_candidate_space(tmp_path / "plain.json")
    assert loaded.precisions == ("fp32",) and loaded.seq_lens == (128,)
    (tmp_path / "bad.json").write_text(json.dumps({**plain, "seq_lens": [100000]}))
    with pytest.raises(SpecError, match="bad.json.*seq_lens"):
        load_candidate_space(tmp_path / "bad.json")
    (tmp_path / "prec.json").write_text(json.dumps({**plain, "precisions": ["fp8"]}))
    with pytest.raises(SpecError, match="precision"):
        load_candidate_space(tmp_path / "prec.json")


def test_candidates_serialise():
    candidate = SPACE.decode(SPACE.random_decisions(np.random.default_rng(3)))
    assert Candidate.from_dict(json.loads(json.dumps(candidate.to_dict()))) == candidate
    assert candidate.key() == Candidate.from_dict(candidate.to_dict()).key()


def test_tiny_space():
    tiny = CandidateSpace(SearchSpace("encoder", 50, 32, (16,), (1,), (1,), 8, (16,)))
    assert tiny.size() == 1 and tiny.choice_counts() == (1, 1, 1, 1, 1, 1)


def test_profile_takes_a_search_space_file(tmp_path):
    from canao.search.space import load_space

    (tmp_path / "s.json").write_text(json.dumps(SPACE.to_dict()))
    assert load_space(tmp_path / "s.json") == SPACE.arch
