"""Per-op times from the timers compiled into the native forward pass: one per op, grouped across layers."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from canao.arch import ArchSpec, LayerSpec
from canao.compiler.build import BuildOptions, build
from canao.compiler.lower import lower_spec
from canao.latency.profile import synthetic_weights
from canao.report.per_op import group_ops, per_op_times

SPEC = ArchSpec("encoder", 100, 64, 64, (LayerSpec(2, 32, 128),) * 2)


@pytest.fixture(scope="module")
def lowered():
    return lower_spec(SPEC, synthetic_weights(SPEC, np.random.default_rng(0)))


def test_every_op_is_timed_and_the_gemm_flops_are_right(lowered):
    times = per_op_times(lowered, BuildOptions(threads=1), 16, runs=5, warmup=1)
    assert [t.index for t in times] == list(range(len(times))) and all(t.ms >= 0 for t in times)
    assert sum(t.ms for t in times) > 0
    up = next(t for t in times if t.source == "layers.0.ffn.up")
    assert up.op == "gemm" and up.detail == "bias+gelu" and up.gflop == pytest.approx(2 * 16 * 64 * 128 / 1e9)
    attn = next(t for t in times if t.op == "attention")
    assert attn.gflop == pytest.approx(4 * 16 * 16 * 64 / 1e9) and attn.detail == "2x32"
    groups = {g.name: g for g in group_ops(times)}
    assert groups["layers.*.ffn.up gemm [bias+gelu]"].count == 2
    assert sum(g.ms for g in groups.values()) == pytest.approx(sum(t.ms for t in times))


def test_timers_do_not_change_the_deployed_build(lowered):
    plain = build(lowered, BuildOptions(threads=1))
    assert "-DCANAO_PROFILE" not in plain.options.extra_flags
    model = plain.load()
    model.run(np.zeros((1, 8), dtype=np.int64))
    lib = model.library.lib
    lib.canao_op_ms.restype, lib.canao_op_ms.argtypes = ctypes.c_double, [ctypes.c_int]
    assert [lib.canao_op_ms(i) for i in range(3)] == [0.0] * 3  # timers compiled out of the deployed library
    assert lib.canao_op_ms(10_000) == -1.0
