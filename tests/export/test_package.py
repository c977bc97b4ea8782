"""`canao export`: the C package builds with make, its C API gives the Python runtime's outputs (x86-64, and
aarch64 under qemu), refuses bad input and damaged or foreign weights with a code (under ASan + UBSan), and
the export never leaves a half-written directory or overwrites one it did not write."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from canao.compiler.artifact import load_artifact
from canao.compiler.codegen.runner import write_calls
from canao.compiler.toolchain import BASE_FLAGS
from canao.device import host_simd
from canao.export.package import ExportError, export_artifact
from canao.export.weights_file import HEADER_BYTES, WeightsFileError, read_weights_file
from canao.storage import ExistingDirectoryError
from tests.compiler.graphs import DEC, ENC
from tests.export.conftest import CASES
from tests.export.levels import PICKED_LEVEL, X86_VECTOR_HOSTS

DRIVER = Path(__file__).with_name("api_driver.c")
CC, CROSS_CC, QEMU = shutil.which("cc") or shutil.which("gcc"), "aarch64-linux-gnu-gcc", "qemu-aarch64"
pytestmark = [
    pytest.mark.skipif(CC is None or shutil.which("make") is None, reason="needs a C compiler and make"),
    pytest.mark.skipif(host_simd() not in X86_VECTOR_HOSTS, reason="the linux-x86_64 export runs AVX2 code"),
]


def _calls(kind: str):
    rng = np.random.default_rng(3)
    if kind == "encoder":
        ids = rng.integers(0, ENC.vocab_size, 9).astype(np.int32)
        types = (np.arange(9) >= 5).astype(np.int32)
        padded = np.where(np.arange(9) < 7, 0.0, np.finfo(np.float32).min).astype(np.float32)
        return [(ids, types, np.zeros(9, np.float32), 0), (ids, types, padded, 0), (ids[:1], types[:1], padded[:1], 0)]
    ids = rng.integers(0, DEC.vocab_size, 9).astype(np.int32)
    z = np.zeros(9, np.int32)
    f = np.zeros(9, np.float32)
    return [
        (ids[:5], z[:5], f[:5], 0),
        (ids[5:6], z[:1], f[:1], 5),
        (ids[6:8], z[:2], f[:2], 6),
        (ids[:3], z[:3], f[:3], 0),
    ]


def _expected(path: Path, kind: str, calls, simd: str) -> list[np.ndarray]:
    model = load_artifact(path, simd=simd).model
    out = []
    if kind == "encoder":
        for ids, types, mask, _ in calls:
            keep = (mask == 0).astype(np.int32)
            res = model.run(ids, attention_mask=keep, token_type_ids=types)
            out.append(np.concatenate([np.asarray(v[0]).ravel() for v in _ordered(res)]))
        return out
    session = model.new_session()
    for ids, _, _, past in calls:
        out.append((session.prefill(ids) if past == 0 else session.decode_step(ids)).ravel())
    return out


def _ordered(res: dict) -> list:
    if "start_logits" in res:  # the graph's one output is [T, 2]: start and end interleaved
        return [np.stack([res["start_logits"], res["end_logits"]], axis=-1)]
    return [res["logits"]] if "logits" in res else [res["last_hidden_state"], res["pooled"]]


def _driver(pkg: Path, tmp: Path, cc: str, cflags: list[str], name: str) -> Path:
    """api_driver.c linked with the package's static library, built by the package's own Makefile (in a copy,
    with `cflags`: sanitizers, or the cross compiler's)."""
    work = tmp / f"{name}-pkg"
    shutil.copytree(pkg, work, ignore=shutil.ignore_patterns("build"))
    flags = " ".join(cflags)
    proc = subprocess.run(
        ["make", "-s", f"CC={cc}", f"CFLAGS={flags}", "build/libcanao_model.a"],
        cwd=work,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    exe = tmp / name
    cmd = [cc, *cflags, "-I", str(work), str(DRIVER), str(work / "build/libcanao_model.a"), "-fopenmp", "-o", str(exe)]
    proc = subprocess.run([*cmd, "-lm"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return exe


SANITIZE = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


SANITIZED = ["-std=c11", "-fPIC", "-ffp-contract=fast", *SANITIZE]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, **kw)


def test_package_layout_manifest_and_prebuilt_library(packages):
    pkg = packages["qa"]
    manifest = json.loads((pkg / "export.json").read_text())
    assert manifest["target"] == "linux-x86_64" and manifest["levels"] == ["avx512", "avx2"]
    for name in (
        "kernel_avx2.c",
        "kernel_avx512.c",
        "canao_rename_avx2.h",
        "canao_levels.c",
        "canao_api.h",
        "canao_api.c",
        "canao_model.h",
        "canao_kernels.h",
        "weights.bin",
        "tokenizer.bin",
        "canao_tokenizer.c",
        "Makefile",
        "CMakeLists.txt",
        "model.json",
    ):
        assert name in manifest["files"], name
        assert manifest["files"][name]["bytes"] == (pkg / name).stat().st_size
    assert {"build/libcanao_model.a", "build/libcanao_model.so", "build/canao-model-run"} <= set(manifest["prebuilt"])
    sections = read_weights_file(pkg / "weights.bin")
    assert [h.simd for h, _ in sections] == ["avx512", "avx2"]  # panels of 32 and 16 columns: two blobs
    assert all(h.graph_hash == manifest["graph_hashes"][h.simd] and b.size == h.floats for h, b in sections)
    model = json.loads((pkg / "model.json").read_text())
    assert model["task"]["task"] == "qa" and model["spec"]["hidden"] == ENC.hidden
    assert "tokenizer.bin" not in json.loads((packages["lm"] / "export.json").read_text())["files"]


@pytest.mark.parametrize("name", list(CASES))
def test_c_api_gives_the_python_runtimes_outputs_under_sanitizers(packages, artifacts, tmp_path, name):
    kind = CASES[name][0].kind
    calls = _calls(kind)
    write_calls(tmp_path / "calls.bin", calls)
    exe = _driver(packages[name], tmp_path, str(CC), SANITIZED, "driver")
    proc = _run(
        [str(exe), "run", str(packages[name] / "weights.bin"), str(tmp_path / "calls.bin"), str(tmp_path / "o")]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.fromfile(tmp_path / "o", dtype=np.float32)
    want = np.concatenate(_expected(artifacts[name], kind, calls, PICKED_LEVEL))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    bad = _run([str(exe), "bad", str(packages[name] / "weights.bin")])
    assert bad.returncode == 0 and bad.stdout.strip() == "ok", bad.stderr[-3000:]
    if kind == "decoder":
        assert _greedy([str(exe)], packages[name], artifacts[name]) == _python_greedy(artifacts[name], PICKED_LEVEL)
    fuzz = _run([str(exe), "fuzz", str(packages[name] / "weights.bin"), "400"])
    assert fuzz.returncode == 0 and fuzz.stdout.strip() == "ok", fuzz.stderr[-3000:]


def test_the_static_library_links_with_a_plain_program(packages, tmp_path):
    pkg = packages["classification"]
    exe = tmp_path / "linked"
    cmd = [str(CC), "-O2", "-I", str(pkg), str(DRIVER), str(pkg / "build/libcanao_model.a"), "-fopenmp", "-lm"]
    proc = subprocess.run([*cmd, "-o", str(exe)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = _run([str(exe), "open", str(pkg / "weights.bin")])
    assert out.stdout.startswith(f"0 {PICKED_LEVEL}")


PROMPT, NEW_TOKENS = [5, 17, 42], 12


def _greedy(prefix: list[str], pkg: Path, art: Path) -> list[int]:
    proc = _run([*prefix, "greedy", str(pkg / "weights.bin"), str(NEW_TOKENS), *map(str, PROMPT)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [int(x) for x in proc.stdout.split()]


def _python_greedy(art: Path, simd: str = "avx2") -> list[int]:
    session = load_artifact(art, simd=simd).model.new_session()
    logits, out = session.prefill(np.array(PROMPT)), []
    for _ in range(NEW_TOKENS):
        out.append(int(np.argmax(logits[-1])))
        logits = session.decode_step(out[-1])
    return out


def _damaged(tmp: Path, weights: Path) -> dict[str, tuple[Path, int, str]]:
    raw = weights.read_bytes()
    flipped = bytearray(raw)
    flipped[HEADER_BYTES + 4 * 17] ^= 0x10
    files = {
        "truncated": (raw[:-4], -3, "truncated"),
        "bit flip": (bytes(flipped), -3, "checksum"),
        "not weights": (b"hello, I am a text file\n" * 10, -3, "not a canao weights file"),
        "empty": (b"", -3, "not a canao weights file"),
    }
    out = {}
    for name, (data, code, words) in files.items():
        path = tmp / name.replace(" ", "_")
        path.write_bytes(data)
        out[name] = (path, code, words)
    return out


def test_damaged_or_foreign_weights_are_refused_with_a_reason(packages, tmp_path):
    exe = _driver(packages["qa"], tmp_path, str(CC), SANITIZED, "driver")
    cases = _damaged(tmp_path, packages["qa"] / "weights.bin")
    cases["another model"] = (packages["lm"] / "weights.bin", -4, "graph")
    cases["missing"] = (tmp_path / "nope.bin", -2, "cannot open")
    for name, (path, code, words) in cases.items():
        proc = _run([str(exe), "open", str(path)])
        assert proc.returncode == 0, (name, proc.stderr[-2000:])
        rc, _, msg = proc.stdout.strip().partition(" ")
        assert int(rc) == code and words in msg, (name, proc.stdout)
    with pytest.raises(WeightsFileError, match="checksum"):
        read_weights_file(cases["bit flip"][0])


def test_export_refuses_a_foreign_directory_and_replaces_its_own(artifacts, packages, tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    with pytest.raises(ExistingDirectoryError):
        export_artifact(artifacts["lm"], "linux-x86_64", user, prebuilt=False)
    assert (user / "notes.txt").read_text() == "keep me"
    again = export_artifact(artifacts["lm"], "linux-x86_64", tmp_path / "own", prebuilt=False)
    export_artifact(artifacts["lm"], "linux-x86_64", again.out, prebuilt=False)  # its own: replaced
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".own.")]  # no temporary left behind
    with pytest.raises(ExportError, match="unknown target"):
        export_artifact(artifacts["lm"], "windows-ia64", tmp_path / "x")


@pytest.mark.skipif(
    shutil.which(CROSS_CC) is None or shutil.which(QEMU) is None,
    reason="needs gcc-aarch64-linux-gnu and qemu-user (installed by .ci/run)",
)
@pytest.mark.parametrize("name", ["qa", "classification", "lm"])
def test_aarch64_package_under_qemu_gives_the_python_runtimes_outputs(artifacts, tmp_path, name):
    result = export_artifact(artifacts[name], "linux-aarch64", tmp_path / "pkg")
    assert result.levels == ("neon",) and "build/libcanao_model.a" in result.prebuilt
    kind = CASES[name][0].kind
    calls = _calls(kind)
    write_calls(tmp_path / "calls.bin", calls)
    exe = _driver(result.out, tmp_path, CROSS_CC, list(BASE_FLAGS), "driver-aarch64")
    qemu = [QEMU, "-L", "/usr/aarch64-linux-gnu", str(exe)]
    proc = _run([*qemu, "run", str(result.out / "weights.bin"), str(tmp_path / "calls.bin"), str(tmp_path / "o")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.fromfile(tmp_path / "o", dtype=np.float32)
    want = np.concatenate(_expected(artifacts[name], kind, calls, "avx2"))  # the x86-64 runtime as reference
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    bad = _run([*qemu, "bad", str(result.out / "weights.bin")])
    assert bad.returncode == 0 and bad.stdout.strip() == "ok", bad.stderr[-3000:]
    if kind == "decoder":  # generated ids: greedy decoding through the C API equals the Python runtime's
        assert _greedy(qemu, result.out, artifacts[name]) == _python_greedy(artifacts[name])


def test_cli_exports_and_names_bad_targets(artifacts, tmp_path):
    from typer.testing import CliRunner

    from canao.cli import app

    runner = CliRunner()
    out = tmp_path / "cli-pkg"
    result = runner.invoke(
        app, ["export", str(artifacts["classification"]), "--out", str(out), "--no-prebuilt"], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert "weights.bin" in result.output and (out / "export.json").exists() and not (out / "build").exists()
    assert "none (--no-prebuilt)" in result.output and "no compiler" not in result.output
    import stat

    modes = {stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")] if p.is_dir()}
    assert modes == {0o755}, modes  # shared like every output, not mkdtemp's 0700
    result = runner.invoke(app, ["export", str(artifacts["classification"]), "--target", "mips", "--out", str(out)])
    assert result.exit_code == 2 and "unknown target" in result.output
    result = runner.invoke(app, ["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "not found" in result.output


def test_the_simd_level_is_picked_at_run_time_and_can_be_forced(packages, artifacts, tmp_path):
    """The auto pick is this CPU's best level; CANAO_SIMD forces one, refused with a reason where it cannot run;
    every level this CPU runs gives the Python runtime's outputs for that level."""
    exe = _driver(packages["lm"], tmp_path, str(CC), ["-O2", *BASE_FLAGS[1:]], "driver")
    weights = str(packages["lm"] / "weights.bin")
    assert _run([str(exe), "open", weights]).stdout.split()[:2] == ["0", PICKED_LEVEL]
    runnable = ["avx2", *(["avx512"] if PICKED_LEVEL == "avx512" else [])]
    calls = _calls("decoder")
    write_calls(tmp_path / "calls.bin", calls)
    for level in runnable:
        env = {**os.environ, "CANAO_SIMD": level}
        opened = subprocess.run([str(exe), "open", weights], capture_output=True, text=True, env=env)
        assert opened.stdout.split()[:2] == ["0", level]
        proc = subprocess.run(
            [str(exe), "run", weights, str(tmp_path / "calls.bin"), str(tmp_path / "o")], env=env, capture_output=True
        )
        assert proc.returncode == 0
        want = np.concatenate(_expected(artifacts["lm"], "decoder", calls, level))
        np.testing.assert_allclose(np.fromfile(tmp_path / "o", dtype=np.float32), want, rtol=1e-5, atol=1e-6)
    if "avx512" not in runnable:
        env = {**os.environ, "CANAO_SIMD": "avx512"}
        proc = subprocess.run([str(exe), "open", weights], capture_output=True, text=True, env=env)
        assert proc.stdout.startswith("-6 ") and "avx512 (not on this CPU)" in proc.stdout
    proc = subprocess.run(
        [str(exe), "open", weights], capture_output=True, text=True, env={**os.environ, "CANAO_SIMD": "sse9"}
    )
    assert proc.stdout.startswith("-1 ") and "CANAO_SIMD=sse9" in proc.stdout


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_each_precision_runs_the_level_the_in_process_runtime_runs(tmp_path, precision):
    """An x86-64 package carries every level that runs the precision with its own code (bf16 and int8: AMX,
    AVX-512 with BF16/VNNI, AVX-512, AVX2), built from the same SIMD table as in-process builds; its C API picks
    the in-process runtime's level on this CPU, and every level this CPU runs gives that level's in-process
    outputs. Levels of one vector width that pack the same panels share one weights section."""
    from canao.compiler.artifact import write_artifact
    from canao.compiler.build import BuildOptions
    from canao.device import SIMD_LEVELS
    from canao.export.package import TARGETS
    from tests.compiler.graphs import torch_model

    weights = {k: v.detach().numpy() for k, v in torch_model(ENC, "qa").state_dict().items()}
    art = tmp_path / "art"
    write_artifact(art, ENC, weights, task="qa", options=BuildOptions(precision=precision))
    result = export_artifact(art, "linux-x86_64", tmp_path / "pkg", prebuilt=False)
    levels = TARGETS["linux-x86_64"].levels_for(precision)
    assert result.levels == levels
    assert levels == (("avx512", "avx2") if precision == "fp32" else ("amx", "avx512bf16", "avx512", "avx2"))
    sections = read_weights_file(result.out / "weights.bin")
    assert len(sections) == len({blob.tobytes() for _, blob in sections})  # each distinct blob written once
    host = host_simd()
    runnable = [lv for lv in levels if SIMD_LEVELS[lv].cpu_flags <= SIMD_LEVELS[host].cpu_flags]
    same_code = {"fp32": {"avx512bf16": "avx512", "amx": "avx512"}}.get(precision, {})
    assert runnable[0] == same_code.get(host, host)  # what the C API should pick: the in-process level's code
    exe = _driver(result.out, tmp_path, str(CC), ["-O2", *BASE_FLAGS[1:]], "driver")
    weights_bin = str(result.out / "weights.bin")
    assert _run([str(exe), "open", weights_bin]).stdout.split()[:2] == ["0", runnable[0]]
    calls = _calls("encoder")
    write_calls(tmp_path / "calls.bin", calls)
    for level in runnable:
        env = {**os.environ, "CANAO_SIMD": level}
        proc = subprocess.run(
            [str(exe), "run", weights_bin, str(tmp_path / "calls.bin"), str(tmp_path / "o")],
            env=env,
            capture_output=True,
        )
        assert proc.returncode == 0, proc.stderr
        want = np.concatenate(_expected(art, "encoder", calls, level))
        np.testing.assert_allclose(np.fromfile(tmp_path / "o", dtype=np.float32), want, rtol=1e-5, atol=1e-6)
    for level in set(levels) - set(runnable):  # compiled into the library, refused here with the reason
        env = {**os.environ, "CANAO_SIMD": level}
        proc = subprocess.run([str(exe), "open", weights_bin], capture_output=True, text=True, env=env)
        assert proc.stdout.startswith("-6 ") and f"{level} (not on this CPU)" in proc.stdout
