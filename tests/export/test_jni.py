"""The JNI binding of an exported package, called from Java with the machine's JDK: the Python runtime's outputs
for an encoder and a decoder, the `tokenizers` library's ids, errors thrown as CanaoException; and the binding
cross-compiles for aarch64 (Android's ABI is checked by an NDK build, documented in docs/deploy.md)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from canao.compiler.artifact import load_artifact
from canao.device import host_simd
from canao.export.package import export_artifact, jdk_include
from canao.models.teacher import teacher_dir
from canao.models.tokenizer import load_tokenizer
from tests.export.levels import PICKED_LEVEL, X86_VECTOR_HOSTS

CHECK = Path(__file__).with_name("JniCheck.java")
pytestmark = [
    pytest.mark.skipif(
        shutil.which("javac") is None or shutil.which("java") is None or jdk_include() is None,
        reason="needs a JDK (javac, java, jni.h; installed by .ci/run)",
    ),
    pytest.mark.skipif(shutil.which("make") is None, reason="needs make"),
    pytest.mark.skipif(host_simd() not in X86_VECTOR_HOSTS, reason="linux-x86_64 runs AVX2 code"),
]


@pytest.fixture(scope="module")
def java(tmp_path_factory, artifacts, packages) -> tuple[Path, dict[str, tuple[Path, Path]]]:
    """Compiled Java classes (binding + check) and the shared exported packages (artifact, package) per kind."""
    root = tmp_path_factory.mktemp("jni")
    pairs = {"encoder": (artifacts["qa"], packages["qa"]), "decoder": (artifacts["lm"], packages["lm"])}
    classes = root / "classes"
    sources = [*sorted((pairs["encoder"][1] / "java" / "ai" / "canao").glob("*.java")), CHECK]
    proc = subprocess.run(["javac", "-d", str(classes), *map(str, sources)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return classes, pairs


def _java(classes: Path, pkg: Path, *args: str) -> list[str]:
    lib = pkg / "build" / "libcanao_jni.so"
    proc = subprocess.run(
        ["java", "-cp", str(classes), "JniCheck", str(lib), *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.splitlines()


def _floats(line: str) -> np.ndarray:
    return np.array([float(x) for x in line.split()[1:]], dtype=np.float32)


def _errors(lines: list[str]) -> dict[str, str]:
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in lines if not line.startswith(("out", "ids"))}


def test_encoder_through_jni_equals_the_python_runtime(java):
    classes, packages = java
    art, pkg = packages["encoder"]
    ids, types = [3, 17, 42, 5, 60, 1, 9], [0, 0, 0, 1, 1, 1, 1]
    lines = _java(classes, pkg, "encode", str(pkg / "weights.bin"), ",".join(map(str, ids)), ",".join(map(str, types)))
    res = load_artifact(art, simd=PICKED_LEVEL).model.run(np.array(ids), token_type_ids=np.array(types))
    want = np.stack([res["start_logits"][0], res["end_logits"][0]], axis=-1).ravel()
    np.testing.assert_allclose(_floats(lines[1]), want, rtol=1e-5, atol=1e-6)
    errors = _errors(lines)
    assert errors["open-missing"].startswith("-2 ") and "cannot open" in errors["open-missing"]
    assert errors["id-range"].startswith("-7 ") and "out of range" in errors["id-range"]
    assert errors["empty"].startswith("-7 ")
    assert errors["length-mismatch"].startswith("-1 ")
    assert errors["kind"].startswith("-8 ")
    assert errors["closed"] == "the model is closed"


def test_decoder_through_jni_equals_the_python_runtime(java):
    classes, packages = java
    art, pkg = packages["decoder"]
    lines = _java(classes, pkg, "decode", str(pkg / "weights.bin"), "4,8,15,16", "23")
    session = load_artifact(art, simd=PICKED_LEVEL).model.new_session()
    np.testing.assert_allclose(
        _floats(lines[1]), session.prefill(np.array([4, 8, 15, 16])).ravel(), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(_floats(lines[2]), session.decode_step(23).ravel(), rtol=1e-5, atol=1e-6)
    errors = _errors(lines)
    assert errors["kind"].startswith("-8 ") and errors["too-long"].startswith("-7 ")


def test_tokenizer_through_jni_equals_the_tokenizers_library(java):
    classes, packages = java
    pkg = packages["encoder"][1]
    texts = ["Hello, world!", "naïve café 東京 🙂", "", "   ", "[CLS] unaffable"]
    lines = _java(classes, pkg, "tokens", str(pkg / "tokenizer.bin"), *texts)
    tok = load_tokenizer(teacher_dir())
    for line, text in zip(lines, texts):
        assert [int(x) for x in line.split()[1:]] == tok.encode(text, add_special_tokens=False).ids
    assert _errors(lines)["tokenizer-missing"].startswith("-1 ")


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None, reason="needs gcc-aarch64-linux-gnu")
def test_the_binding_cross_compiles_for_aarch64(java, tmp_path):
    art = java[1]["encoder"][0]
    result = export_artifact(art, "linux-aarch64", tmp_path / "pkg")
    assert "build/libcanao_jni.so" in result.prebuilt
    header = (result.out / "build" / "libcanao_jni.so").read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183  # EM_AARCH64
