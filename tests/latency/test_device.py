"""Executors run commands locally or through a device template."""

from __future__ import annotations

import pytest

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
