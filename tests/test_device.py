"""This machine and the one SIMD table: flags -> level, what a CPU can run, and the kernel header matching it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from canao.compiler.codegen.c import KERNELS_H, generate_c
from canao.compiler.passes.pipeline import run_pipeline
from canao.device import (
    SIMD_LEVELS,
    SimdError,
    describe_machine,
    fingerprint,
    host_simd,
    resolve_simd,
    simd_level,
    simd_level_from_flags,
)
from tests.compiler.graphs import lowered


def test_simd_levels_from_flags():
    assert (
        simd_level_from_flags("x86_64", {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq"})
        == "avx512"
    )
    assert (
        simd_level_from_flags(
            "x86_64",
            {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16", "avx512_vnni"},
        )
        == "avx512bf16"
    )
    assert simd_level_from_flags("x86_64", {"avx2", "fma", "f16c"}) == "avx2"
    assert simd_level_from_flags("x86_64", {"sse4_2"}) == "scalar"
    assert simd_level_from_flags("aarch64", {"asimd"}) == "neon"


def test_every_tile_height_of_the_table_is_instantiated_in_the_header():
    header = KERNELS_H.read_text()
    for kind in ("DEFINE_GEMM", "DEFINE_GEMM_BF16", "DEFINE_GEMM_I8"):
        instantiated = {int(m) for m in re.findall(rf"^{kind}\((\d+)\)", header, flags=re.M)}
        for level in SIMD_LEVELS.values():
            assert set(level.mr_choices) <= instantiated, (kind, level.name)
            assert level.default_mr in instantiated


def test_generated_code_takes_the_default_tile_height_from_the_graph():
    graph = run_pipeline(lowered(), nr=simd_level("avx2").panel_width)
    assert "#define CANAO_DEFAULT_MR 6" in generate_c(graph)
    assert "#define CANAO_DEFAULT_MR 4" in generate_c(graph.with_nodes(graph.nodes, default_mr=4))


def test_lanes_and_panel_width():
    assert simd_level("avx512").lanes == 16 and simd_level("avx2").panel_width == 16 and simd_level("neon").lanes == 4
    with pytest.raises(SimdError, match="avx512bf16.*'avx3'"):
        simd_level("avx3")


def test_resolve_simd_refuses_what_this_cpu_cannot_run():
    host = host_simd()
    assert resolve_simd("auto") == resolve_simd(None) == host
    assert resolve_simd("scalar") == "scalar"
    wider = [name for name in SIMD_LEVELS if list(SIMD_LEVELS).index(name) > list(SIMD_LEVELS).index(host)]
    other_arch = "neon" if describe_machine().arch == "x86_64" else "avx2"
    for name in [*wider, other_arch]:
        with pytest.raises(SimdError, match="cannot run"):
            resolve_simd(name)


def test_fingerprint_is_stable_and_names_the_level():
    assert fingerprint() == fingerprint() and host_simd() in fingerprint()


def test_the_cli_offers_every_simd_level():
    from canao.cli import Simd
    from canao.device import SIMD_LEVELS

    assert {s.value for s in Simd} == {"auto", *SIMD_LEVELS}


def test_every_x86_level_flag_has_its_cpuid_bit():
    """An exported package checks each level's flags with CPUID (canao_levels.c): none may be missing there, and
    AVX-512 levels need the AVX2 flags too (their code is built with -mavx2 -mfma -mf16c)."""
    from canao.device import CPUID_BITS, SIMD_LEVELS

    for level in SIMD_LEVELS.values():
        if level.arch == "x86_64":
            assert level.cpu_flags <= set(CPUID_BITS), level.name
            assert SIMD_LEVELS["avx2"].cpu_flags <= level.cpu_flags, level.name
    if (Path("/proc/cpuinfo")).exists() and host_simd() in ("avx2", "avx512", "avx512bf16", "amx"):
        assert _cpuid_flags() == {f for f in CPUID_BITS if f in _proc_flags()}  # the C check agrees with the kernel


def _proc_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _cpuid_flags() -> set[str]:
    """The CPUID_BITS flags this CPU reports, read by a C program the way canao_api.c reads them."""
    import shutil
    import subprocess
    import tempfile

    from canao.device import CPUID_BITS

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler")
    registers = ("eax", "ebx", "ecx", "edx")
    checks = "\n".join(
        f"    if (__get_cpuid_count({b.leaf}, {b.subleaf}, &r[0], &r[1], &r[2], &r[3]) && "
        f'(r[{registers.index(b.register)}] >> {b.bit} & 1)) puts("{f}");'
        for f, b in CPUID_BITS.items()
    )
    source = (
        f"#include <cpuid.h>\n#include <stdio.h>\nint main(void) {{\n    unsigned r[4];\n{checks}\n    return 0;\n}}\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "c.c").write_text(source)
        subprocess.run([cc, "-o", f"{tmp}/c", f"{tmp}/c.c"], check=True)
        return set(subprocess.run([f"{tmp}/c"], capture_output=True, text=True, check=True).stdout.split())
