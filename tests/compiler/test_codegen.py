"""Generated C: warning-free at -Wall -Wextra, clean under ASan+UBSan, correct on aarch64 (qemu)."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest

from canao.compiler.codegen.c import generate_c, weight_blob
from canao.compiler.codegen.runner import RUNNER_MAIN, read_outputs, write_calls
from canao.compiler.passes.pipeline import run_pipeline
from canao.compiler.reference import run_reference
from canao.compiler.toolchain import CODEGEN_DIR, compile_flags
from canao.device import host_simd, simd_level
from tests.compiler.graphs import DEC, ENC, encoder_inputs, lowered
from tests.export.levels import X86_VECTOR_HOSTS

CROSS_CC, QEMU = "aarch64-linux-gnu-gcc", "qemu-aarch64"


# bf16/int8: a last-bit difference upstream can round an operand to the neighbouring bf16 value / int8 level
TOL = {"fp32": 1e-4, "bf16": 2e-3, "int8": 2e-2}


def _close(got: np.ndarray, want: np.ndarray, precision: str) -> bool:
    scale = np.abs(want).max() if precision == "int8" else 1.0  # int8 steps scale with each row's range
    return bool(np.abs(got - want).max() < TOL[precision] * max(scale, 1.0))


def _final(spec, task, simd, precision="fp32"):
    return run_pipeline(lowered(spec, task), nr=simd_level(simd).panel_width, precision=precision)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("simd", ["scalar", "avx2", "avx512", "avx512bf16"])
@pytest.mark.parametrize("spec,task", [(ENC, "backbone"), (ENC, "classification"), (DEC, "lm")])
def test_compiles_without_warnings(tmp_path, simd, spec, task, precision):
    src = tmp_path / "model.c"
    src.write_text(generate_c(_final(spec, task, simd, precision)))
    proc = subprocess.run(
        ["cc", *compile_flags(simd), "-Werror", "-c", str(src), "-o", str(tmp_path / "m.o")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def _calls_for(spec):
    rng = np.random.default_rng(4)
    if spec.kind == "encoder":
        x = encoder_inputs(9)
        return [(x["input_ids"], x["token_type_ids"], x["mask"], 0)]
    ids = rng.integers(0, spec.vocab_size, 8).astype(np.int32)
    zeros = np.zeros(8, np.int32)
    return [
        (ids[:5], zeros[:5], zeros[:5].astype(np.float32), 0),
        (ids[5:6], zeros[:1], zeros[:1].astype(np.float32), 5),
        (ids[6:], zeros[:2], zeros[:2].astype(np.float32), 6),
    ]


def _expected(graph, calls):
    """Reference outputs for the same call sequence (decoder caches carried across calls)."""
    m = int(graph.meta["max_positions"])
    caches = {n: np.zeros(graph.types[n].concrete(0, 0, m), np.float32) for n in graph.inputs if n.startswith("cache_")}
    out = []
    for ids, types, mask, past in calls:
        inputs = {"input_ids": ids, **caches}
        if graph.meta["kind"] == "encoder":
            inputs.update(token_type_ids=types, mask=mask)
        out.append(run_reference(graph, inputs, past=past))
    return out


def _run_runner(tmp_path, graph, calls, compile_cmd, run_prefix, env=None):
    (tmp_path / "model.c").write_text(generate_c(graph))
    exe = tmp_path / "runner"
    proc = subprocess.run(
        [*compile_cmd, "-I", str(CODEGEN_DIR), str(tmp_path / "model.c"), str(RUNNER_MAIN), "-o", str(exe), "-lm"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    weight_blob(graph).tofile(tmp_path / "w.bin")
    write_calls(tmp_path / "calls.bin", calls)
    proc = subprocess.run(
        [*run_prefix, str(exe), str(tmp_path / "w.bin"), str(tmp_path / "calls.bin"), str(tmp_path / "out.bin")],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return read_outputs(tmp_path / "out.bin", graph, calls), proc.stderr


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("spec,task", [(ENC, "backbone"), (DEC, "lm")])
def test_clean_under_address_and_undefined_behaviour_sanitizers(tmp_path, spec, task, precision):
    simd = host_simd() if host_simd() in X86_VECTOR_HOSTS else "scalar"
    graph = _final(spec, task, simd, precision)
    calls = _calls_for(spec)
    flags = [f for f in compile_flags(simd) if f not in ("-O3", "-fPIC")]
    cmd = [
        "cc",
        *flags,
        "-O1",
        "-g",
        "-fsanitize=address,undefined",
        "-fno-sanitize-recover=all",
        "-fno-omit-frame-pointer",
    ]
    got, stderr = _run_runner(tmp_path, graph, calls, cmd, [], env={"ASAN_OPTIONS": "detect_leaks=1"})
    assert "runtime error" not in stderr and "ERROR: AddressSanitizer" not in stderr
    for g, want in zip(got, _expected(graph, calls)):
        for name in graph.outputs:
            assert _close(g[name], want[name], precision)


@pytest.mark.skipif(
    shutil.which(CROSS_CC) is None or shutil.which(QEMU) is None,
    reason="needs gcc-aarch64-linux-gnu and qemu-user (installed by .ci/run)",
)
@pytest.mark.parametrize(
    "spec,task,precision",
    [
        (ENC, "backbone", "fp32"),
        (ENC, "qa", "fp32"),
        (DEC, "lm", "fp32"),
        (ENC, "backbone", "bf16"),
        (DEC, "lm", "bf16"),
        (ENC, "qa", "int8"),
        (DEC, "lm", "int8"),
    ],
)
def test_neon_path_under_qemu(tmp_path, spec, task, precision):
    graph = _final(spec, task, "neon", precision)
    calls = _calls_for(spec)
    cmd = [CROSS_CC, *compile_flags("neon"), "-Werror"]
    got, _ = _run_runner(tmp_path, graph, calls, cmd, [QEMU, "-L", "/usr/aarch64-linux-gnu"])
    for g, want in zip(got, _expected(graph, calls)):
        for name in graph.outputs:
            assert _close(g[name], want[name], precision)


@pytest.mark.parametrize("simd", ["scalar", "avx2", "avx512", "avx512bf16"])
def test_hand_written_c_is_warning_free(tmp_path, simd):
    """The runner, profiler and tuning mains are real C files: -Wall -Wextra -Werror sees them as they are."""
    for source in ("runner_main.c", "profiler_main.c", "bench_gemm.c"):
        cmd = [
            "cc",
            *compile_flags(simd),
            "-Werror",
            "-DCANAO_DEFAULT_MR=6",
            "-I",
            str(CODEGEN_DIR),
            "-c",
            str(CODEGEN_DIR / source),
            "-o",
            str(tmp_path / "x.o"),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, (source, proc.stderr)


def test_timing_executable_is_clean_under_sanitizers(tmp_path):
    """The profiler main, built with ASan+UBSan, times a model and refuses sizes whose sum would overflow."""
    from canao.compiler.build import BuildOptions, build_timing_executable

    simd = host_simd() if host_simd() in X86_VECTOR_HOSTS else "scalar"
    flags = ("-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer")
    timing = build_timing_executable(lowered(DEC, "lm"), BuildOptions(simd=simd, extra_flags=flags))
    weight_blob(timing.graph).tofile(tmp_path / "w.bin")
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1"}
    for args, code in ((["3", "5", "1", "3"], 0), (["1", str(2**31 - 1), "0", "1"], 2), (["x", "0", "0", "1"], 2)):
        proc = subprocess.run(
            [str(timing.executable), str(tmp_path / "w.bin"), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert proc.returncode == code and "runtime error" not in proc.stderr and "AddressSanitizer" not in proc.stderr
