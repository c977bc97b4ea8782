"""The one build entry point: validated, versioned options; a build whose stages stay inspectable and which loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from canao.compiler.build import BuildOptions, build, build_timing_executable
from canao.compiler.layout import Precision
from canao.compiler.lower import lower_model
from canao.device import host_simd
from canao.errors import CanaoError
from tests.compiler.graphs import ENC, torch_model


def test_options_validate_and_round_trip_through_json():
    options = BuildOptions(precision="bf16", threads=3, tune_budget_s=1.5, tune_seq_len=64)
    assert options.precision is Precision.BF16
    again = BuildOptions.from_dict(json.loads(json.dumps(options.to_dict())))
    assert again == options and again.to_dict()["precision"] == "bf16"
    assert options.resolved().simd == host_simd() and options.simd == "auto"


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"precision": "fp8"}, "precision"),
        ({"simd": "avx3"}, "simd"),
        ({"threads": 0}, "threads"),
        ({"threads": 100_000}, "threads"),
        ({"threads": 2**31}, "threads"),
        ({"tune_budget_s": -1.0}, "tune_budget_s"),
        ({"tune_seq_len": 0}, "tune_seq_len"),
        ({"version": 99}, "version"),
    ],
)
def test_bad_options_are_refused_with_the_field_named(fields, message):
    with pytest.raises(CanaoError, match=message):
        BuildOptions(**fields)
    with pytest.raises(CanaoError, match="unknown"):
        BuildOptions.from_dict({"simd": "auto", "colour": "blue"})


def test_build_keeps_its_stages_and_loads():
    model = torch_model(ENC, "backbone")
    built = build(lower_model(model), BuildOptions(threads=1))
    assert built.options.simd == host_simd() and built.library.exists()
    assert "canao_forward" in built.source and built.graph.meta["memory_plan"]
    compiled = built.load()
    assert compiled.simd == host_simd() and compiled.threads == 1
    ids = np.arange(7) % 61
    with torch.no_grad():
        want = model(torch.tensor(ids[None])).last_hidden_state.numpy()
    assert np.abs(compiled.run(ids)["last_hidden_state"] - want).max() < 1e-4


def test_timing_executable_runs_and_prints_one_time_per_rep(tmp_path):
    import subprocess

    timing = build_timing_executable(lower_model(torch_model(ENC, "backbone")), BuildOptions())
    from canao.compiler.codegen.c import weight_blob

    weight_blob(timing.graph).tofile(tmp_path / "w.bin")
    out = subprocess.run(
        [str(timing.executable), str(tmp_path / "w.bin"), "5", "0", "1", "4"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(out) == 4 and all(float(x) > 0 for x in out)
    bad = subprocess.run(
        [str(timing.executable), str(tmp_path / "w.bin"), "5", str(2**31 - 1), "1", "4"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "bad" in bad.stderr  # past + T would overflow: refused, not a crash
