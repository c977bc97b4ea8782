"""Executors run commands locally or through a device template."""

from __future__ import annotations

import pytest

from canao.device import simd_level_from_flags
from canao.latency.device import ExecutorError, executor_fingerprint, make_executor


def test_local_and_template_executors():
    assert make_executor("local").run(["echo", "hi"]).strip() == "hi"
    remote = make_executor("env FOO=1 {cmd}", simd="avx2")
    assert remote.run(["sh", "-c", "echo $FOO"]).strip() == "1"
    assert executor_fingerprint(remote) != executor_fingerprint(make_executor("local"))


def test_bad_devices_are_explained():
    with pytest.raises(ExecutorError, match="must contain|neither"):
        make_executor("ssh phone")
    with pytest.raises(ExecutorError, match="--simd"):
        make_executor("ssh phone {cmd}")
    with pytest.raises(ExecutorError, match="exited"):
        make_executor("local").run(["false"])


def test_simd_levels_from_flags():
    assert simd_level_from_flags("x86_64", {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"}) == "avx512"
    assert simd_level_from_flags("x86_64", {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq",
                                            "avx512_bf16", "avx512_vnni"}) == "avx512bf16"
    assert simd_level_from_flags("x86_64", {"avx2", "fma"}) == "avx2"
    assert simd_level_from_flags("x86_64", {"sse4_2"}) == "scalar"
    assert simd_level_from_flags("aarch64", {"asimd"}) == "neon"
