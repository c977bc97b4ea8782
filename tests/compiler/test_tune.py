"""Auto-tuning: choices come from measurements, are reused from the database, never across CPUs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from canao.compiler.build import BuildOptions, build
from canao.compiler.lower import lower_model
from canao.compiler.passes.pipeline import run_pipeline
from canao.compiler.tune import TuningDatabase, apply_tuning, device_key, gemm_shape, shape_key, tune_gemms
from canao.device import host_simd, simd_level
from tests.compiler.graphs import ENC, torch_model


def _final():
    simd = host_simd()
    return run_pipeline(lower_model(torch_model(ENC, "backbone")), nr=simd_level(simd).panel_width), simd


def test_tuning_twice_measures_nothing_new(tmp_path):
    graph, simd = _final()
    db = TuningDatabase.load(tmp_path / "db.json")
    choices, measured = tune_gemms(graph, db, simd=simd, seq_len=16, threads=2, budget_s=30)
    assert measured == len(choices) >= 3
    for entry in choices.values():
        assert entry["mr"] in (4, 6, 8, 12) and entry["ms"] > 0 and len(entry["candidates"]) >= 2
    again, measured_again = tune_gemms(
        graph, TuningDatabase.load(tmp_path / "db.json"), simd=simd, seq_len=16, threads=2, budget_s=30
    )
    assert measured_again == 0 and again == json.loads(json.dumps(choices))


def test_database_of_another_cpu_is_not_used(tmp_path):
    graph, simd = _final()
    path = tmp_path / "db.json"
    foreign = {
        "x86_64-avx2-000000000000@avx2/t2": {
            "M16_N20_K20": {"mr": 4, "kc": 0, "ms": 1.0, "gflops": 1.0, "candidates": {}}
        }
    }
    path.write_text(json.dumps({"version": 1, "devices": foreign}))
    db = TuningDatabase.load(path)
    assert db.lookup(device_key(simd, 2), "M16_N20_K20") is None
    _, measured = tune_gemms(graph, db, simd=simd, seq_len=16, threads=2, budget_s=30)
    assert measured >= 3  # measured here, not taken from the foreign entry
    assert (
        TuningDatabase.load(path).entries["x86_64-avx2-000000000000@avx2/t2"]
        == foreign["x86_64-avx2-000000000000@avx2/t2"]
    )


def test_zero_budget_only_reads_the_database(tmp_path):
    graph, simd = _final()
    choices, measured = tune_gemms(
        graph, TuningDatabase.load(tmp_path / "none.json"), simd=simd, seq_len=16, threads=2, budget_s=0
    )
    assert choices == {} and measured == 0


def test_tuned_model_is_still_exact():
    model = torch_model(ENC, "backbone")
    compiled = build(lower_model(model), BuildOptions(tune_budget_s=30, tune_seq_len=9)).load()
    assert any(n.attr("mr", None) is not None for n in compiled.graph.nodes if n.op == "gemm")
    ids = np.arange(9) % 61
    with torch.no_grad():
        want = model(torch.tensor(ids[None])).last_hidden_state.numpy()
    assert np.abs(compiled.run(ids)["last_hidden_state"] - want).max() < 1e-4


def test_every_variant_is_exact():
    """Each (MR, KC) variant, forced on every GEMM, matches PyTorch (including K blocking)."""
    model = torch_model(ENC, "backbone")
    graph, simd = _final()
    ids = np.arange(13) % 61
    with torch.no_grad():
        want = model(torch.tensor(ids[None])).last_hidden_state.numpy()
    from canao.compiler.codegen.c import generate_c, weight_blob
    from canao.compiler.runtime import CompiledModel, NativeLibrary
    from canao.compiler.toolchain import build_shared_library

    for mr in (4, 6, 8, 12):
        for kc in (0, 8):
            choices = {
                shape_key(*gemm_shape(graph, n, 13)): {"mr": mr, "kc": kc} for n in graph.nodes if n.op == "gemm"
            }
            tuned = apply_tuning(graph, choices, 13)
            assert all(n.attr("mr") == mr for n in tuned.nodes if n.op == "gemm")
            lib = NativeLibrary.load(build_shared_library(generate_c(tuned), simd=simd))
            got = CompiledModel(tuned, weight_blob(tuned), lib, simd=simd).run(ids)["last_hidden_state"]
            assert np.abs(got - want).max() < 1e-4, (mr, kc)


def test_every_measured_shape_is_saved_at_once(tmp_path):
    """Killed after its first shape, a tuning run keeps that shape: the re-run measures only what is missing."""
    graph, simd = _final()
    path = tmp_path / "db.json"

    class Killed(Exception):
        pass

    def kill_after_first(done, total):
        raise Killed()

    with pytest.raises(Killed):
        tune_gemms(
            graph, TuningDatabase.load(path), simd=simd, seq_len=16, threads=2, budget_s=30, progress=kill_after_first
        )
    assert len(TuningDatabase.load(path).entries[device_key(simd, 2)]) == 1
    choices, measured = tune_gemms(graph, TuningDatabase.load(path), simd=simd, seq_len=16, threads=2, budget_s=30)
    assert measured == len(choices) - 1
