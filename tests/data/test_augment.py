"""Embedding-neighbour augmentation: neighbour tables by hand, replacement, unlabelled variants, and the
hard-label loss that skips them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from canao.data.augment import NeighbourReplacer, augment_examples
from canao.data.glue import PairExample
from canao.errors import SpecError
from canao.train.tasks import IGNORE, TaskData, get_task

VOCAB = {"[CLS]": 0, "good": 1, "great": 2, "bad": 3, "awful": 4, "##ing": 5, "a": 6, "movie": 7, "film": 8}
EMB = np.array(
    [[0, 0, 1], [1, 0, 0], [0.9, 0.1, 0], [-1, 0, 0], [-0.9, -0.1, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0.1], [0, 1, 0]],
    dtype=np.float32,
)


def test_neighbours_are_the_nearest_whole_words():
    table = NeighbourReplacer.from_vocab(VOCAB, EMB, k=1).neighbours
    assert set(table) == {"good", "great", "bad", "awful", "movie", "film"}  # no specials, pieces, 1-letter words
    assert table["good"] == ("great",) and table["bad"] == ("awful",) and table["movie"] == ("film",)
    assert NeighbourReplacer.from_vocab(VOCAB, EMB, k=2).neighbours["good"][0] == "great"
    with pytest.raises(SpecError, match="k >= 1"):
        NeighbourReplacer.from_vocab(VOCAB, EMB, k=0)


def test_replacement_and_variants():
    replacer = NeighbourReplacer.from_vocab(VOCAB, EMB, k=1)
    rng = np.random.default_rng(0)
    assert replacer.augment("a good movie , really", rng, 1.0) == "a great film , really"
    example = PairExample("a good movie", "bad film", 1, "dev-7")
    variants = augment_examples([example], replacer, copies=3, p=1.0, seed=0)
    assert len(variants) == 1  # with p = 1 every copy is the same sentence: duplicates are dropped
    assert variants[0] == PairExample("a great film", "awful movie", None, "dev-7-aug0")
    many = augment_examples([example] * 2, replacer, copies=4, p=0.5, seed=1)
    assert all(v.label is None for v in many) and len(many) <= 8
    assert augment_examples([example], replacer, copies=2, p=0.5, seed=3) == augment_examples(
        [example], replacer, copies=2, p=0.5, seed=3
    )


def test_unlabelled_examples_are_left_out_of_the_hard_loss():
    task = get_task("sst2")
    data = TaskData([((1, 2), (0, 0)), ((3,), (0,)), ((4, 5, 6), (0, 0, 0))], [None] * 3, [1, None, 0])
    batch = task.collate(data, np.array([0, 1, 2]))
    assert batch["labels"].tolist() == [1, IGNORE, 0]
    logits = torch.tensor([[0.2, 1.0], [3.0, -1.0], [0.5, 0.1]])
    want = F.cross_entropy(logits[[0, 2]], torch.tensor([1, 0]))
    assert torch.allclose(task.loss(logits, batch), want)
    only_unlabelled = task.collate(data, np.array([1]))
    assert task.loss(logits[1:2], only_unlabelled).item() == 0.0
