"""`canao export`: an artifact as a dependency-free C package for Linux x86-64, Linux aarch64 or Android arm64.

The exported directory builds with any C compiler and make (or CMake), and
holds everything a phone app or a C program needs, without Python:

    kernel_<level>.c  canao_kernels.h          the generated model (graph as code) per SIMD level, and its kernels
    canao_rename_<level>.h  canao_levels.c     per-level symbol prefixes and the run-time dispatch table
    canao_model.h  canao_dispatch.h            the generated model's ABI and the table's type
    canao_api.h  canao_api.c                   the C API: open weights, encode / decode, outputs, errors
    canao_run.c  model.cfg                     the runner canao-model-run (QA, classify, embed, generate; JSON)
    canao_jni.c  java/ai/canao/*.java          JNI binding for Java / Android (make jni, make java)
    canao_tokenizer.h  canao_tokenizer.c       WordPiece / byte-level BPE, equal in ids to `tokenizers`
    weights.bin  tokenizer.bin                 packed weights (checked header) and tokenizer tables
    model.json                                 spec, task, labels, target, SIMD level, graph hash
    Makefile  CMakeLists.txt                   libcanao_model.a / .so and the runner, with the target's SIMD flags
    build/                                     prebuilt libraries when the target's compiler is here
    export.json                                sha256 of every file, written last

The code is generated for each SIMD level of the target that runs the
artifact's precision with its own code (`Target.levels_for`; x86-64: AMX,
AVX-512 with BF16/VNNI, AVX-512 and AVX2 with FMA for bf16 and int8, AVX-512
and AVX2 for fp32; aarch64: NEON), picked at run time from CPUID, tuned where
this CPU runs that level; weights.bin holds each distinct packed blob once
(the panel width differs between vector widths, not between the levels of one).
The package is written to a temporary directory beside `out` and renamed into
place: an interrupted export leaves no half-written package, and an existing
directory that canao did not write is never overwritten.

Example::

    result = export_artifact(Path("art"), "linux-aarch64", Path("art-aarch64"))
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from canao.compiler.artifact import ArtifactSource, read_artifact_source
from canao.compiler.build import BuildOptions, generate_for_target
from canao.compiler.codegen.c import weight_blob
from canao.compiler.ir import Graph, graph_hash
from canao.compiler.toolchain import BASE_FLAGS, CODEGEN_DIR
from canao.device import CPUID_BITS, SIMD_LEVELS, CpuidBit
from canao.errors import CanaoError
from canao.export.weights_file import Section, write_weights_file
from canao.storage import prepare_target, replace_directory, temp_directory

C_DIR = Path(__file__).with_name("c")
C_FILES = (
    "canao_api.h",
    "canao_api.c",
    "canao_dispatch.h",
    "canao_tokenizer.h",
    "canao_tokenizer.c",
    "canao_run.c",
    "canao_jni.c",
)
JAVA_DIR = Path(__file__).with_name("java")
JAVA_FILES = tuple(
    f"java/ai/canao/{name}"
    for name in ("CanaoModel.java", "CanaoTokenizer.java", "CanaoException.java", "NativeHandle.java")
)
EXPORT_VERSION = 1
MANIFEST = "export.json"


class ExportError(CanaoError, RuntimeError):
    """The package cannot be written or its prebuilt libraries fail to build."""


@dataclass(frozen=True)
class Target:
    name: str
    arch: str  # canao.device's SimdLevel.arch: the package carries that architecture's levels
    compilers: tuple[str, ...]  # C compilers that build the prebuilt libraries here (first found is used)
    note: str  # how to build for it, for model.json and the docs

    def levels_for(self, precision: str) -> tuple[str, ...]:
        """The SIMD levels of the package for an artifact of `precision`, most capable (picked first) first:
        every level of the architecture in canao.device.SIMD_LEVELS, less those that would run this precision
        with the same code as a less capable one (the same vector width, the precision no more native, no AMX
        tiles for it): an fp32 package has no AVX-512 BF16 or AMX build, whose fp32 code is AVX-512's."""
        kept: dict[tuple[int, bool, bool], str] = {}
        for level in SIMD_LEVELS.values():  # narrowest first
            if level.arch != self.arch:
                continue
            native = precision in level.native_precisions
            key = (level.lanes, native, native and precision != "fp32" and level.amx_tiles)
            kept.setdefault(key, level.name)
        return tuple(reversed(kept.values()))


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "linux-x86_64",
            "x86_64",
            ("x86_64-linux-gnu-gcc", "gcc", "cc"),
            "make (runs the most capable code the CPU has: AMX, AVX-512 with BF16/VNNI, AVX-512, else AVX2 + FMA)",
        ),
        Target("linux-aarch64", "aarch64", ("aarch64-linux-gnu-gcc",), "make CC=aarch64-linux-gnu-gcc"),
        Target(
            "android-arm64",
            "aarch64",
            (),
            "make CC=$NDK/toolchains/llvm/prebuilt/linux-x86_64/bin/aarch64-linux-android24-clang OPENMP=-fopenmp",
        ),
    )
}


@dataclass(frozen=True)
class ExportResult:
    out: Path
    target: str
    levels: tuple[str, ...]
    graph_hashes: dict[str, str]  # SIMD level -> hash of its final graph (the panel width differs per level)
    prebuilt: tuple[str, ...]  # files under build/ (empty when no compiler for the target is here)
    files: dict[str, int]  # name -> bytes


def _makefile(levels: tuple[str, ...], target: str) -> str:
    base = " ".join(f for f in BASE_FLAGS if f not in ("-fopenmp", "-Wall", "-Wextra"))
    kernels = " ".join(f"build/kernel_{level}.o" for level in levels)
    rules = "\n".join(
        f"build/kernel_{level}.o: kernel_{level}.c canao_rename_{level}.h canao_kernels.h canao_model.h | build\n"
        f"\t$(CC) $(CFLAGS) {' '.join(SIMD_LEVELS[level].cc_flags)} $(OPENMP) -include canao_rename_{level}.h "
        f"-I. -c kernel_{level}.c -o $@\n"
        for level in levels
    )
    return f"""# Builds the exported canao model ({target}; SIMD levels {", ".join(levels)}, picked at run time):
# build/libcanao_model.a, build/libcanao_model.so and build/canao-model-run.
#   make                      with the host compiler
#   make CC=aarch64-linux-gnu-gcc
#   make CC=<NDK clang> OPENMP=-fopenmp      (Android; see docs/deploy.md)
#   make OPENMP=                             single-threaded, without OpenMP
# canao_api.c is built without SIMD flags: it checks the CPU before any vector code runs.
CC ?= cc
AR ?= ar
OPENMP ?= -fopenmp
CFLAGS ?= {base}
OBJS = {kernels} build/canao_levels.o build/canao_api.o build/canao_tokenizer.o

all: build/libcanao_model.a build/libcanao_model.so build/canao-model-run

build:
\tmkdir -p build

{rules}
build/canao_levels.o: canao_levels.c canao_dispatch.h | build
\t$(CC) $(CFLAGS) -I. -c canao_levels.c -o $@

build/canao_api.o: canao_api.c canao_api.h canao_dispatch.h | build
\t$(CC) $(CFLAGS) -I. -c canao_api.c -o $@

build/canao_tokenizer.o: canao_tokenizer.c canao_tokenizer.h | build
\t$(CC) $(CFLAGS) -I. -c canao_tokenizer.c -o $@

build/libcanao_model.a: $(OBJS)
\t$(AR) rcs $@ $(OBJS)

build/libcanao_model.so: $(OBJS)
\t$(CC) -shared $(OPENMP) $(OBJS) -o $@ -lm

build/canao-model-run: canao_run.c build/libcanao_model.a
\t$(CC) $(CFLAGS) $(OPENMP) -I. canao_run.c build/libcanao_model.a -o $@ -lm

# JNI (Java / Android): `make jni` builds libcanao_jni.so (the Java classes are in java/ai/canao/). JAVA_HOME
# defaults to the JDK of javac; an Android NDK clang finds jni.h itself (make jni JNI_INCLUDES= CC=...).
JAVA_HOME ?= $(shell dirname $$(dirname $$(readlink -f $$(command -v javac) 2>/dev/null)) 2>/dev/null)
JNI_INCLUDES ?= -I$(JAVA_HOME)/include -I$(JAVA_HOME)/include/linux

build/libcanao_jni.so: canao_jni.c canao_api.h canao_tokenizer.h $(OBJS)
\t$(CC) $(CFLAGS) -shared $(OPENMP) $(JNI_INCLUDES) -I. canao_jni.c $(OBJS) -o $@ -lm

build/canao.jar: java/ai/canao/*.java | build
\tjavac -d build/classes java/ai/canao/*.java && jar cf $@ -C build/classes .

jni: build/libcanao_jni.so

java: build/canao.jar

clean:
\trm -rf build

.PHONY: all clean jni java
"""


def _cmakelists(levels: tuple[str, ...]) -> str:
    per_level = "\n".join(
        f"set_source_files_properties(kernel_{level}.c PROPERTIES COMPILE_OPTIONS "
        f'"{";".join([*SIMD_LEVELS[level].cc_flags, "-include", f"canao_rename_{level}.h"])}")'
        for level in levels
    )
    kernels = " ".join(f"kernel_{level}.c" for level in levels)
    return f"""cmake_minimum_required(VERSION 3.10)
project(canao_model C)
set(CMAKE_C_STANDARD 11)
set(CMAKE_POSITION_INDEPENDENT_CODE ON)
if(NOT CMAKE_BUILD_TYPE)
  set(CMAKE_BUILD_TYPE Release)
endif()
find_package(OpenMP)
set(SOURCES {kernels} canao_levels.c canao_api.c canao_tokenizer.c)
{per_level}
add_library(canao_model STATIC ${{SOURCES}})
add_library(canao_model_shared SHARED ${{SOURCES}})
set_target_properties(canao_model_shared PROPERTIES OUTPUT_NAME canao_model)
add_executable(canao-model-run canao_run.c)
target_link_libraries(canao-model-run PRIVATE canao_model)
foreach(lib canao_model canao_model_shared)
  target_include_directories(${{lib}} PUBLIC ${{CMAKE_CURRENT_SOURCE_DIR}})
  target_compile_options(${{lib}} PRIVATE -O3 -ffp-contract=fast)
  target_link_libraries(${{lib}} PUBLIC m)
  if(OpenMP_C_FOUND)
    target_link_libraries(${{lib}} PUBLIC OpenMP::OpenMP_C)
  endif()
endforeach()
"""


def model_symbols() -> list[str]:
    """The entry points of a generated model (canao_model.h), renamed per SIMD level in a package."""
    return sorted(set(re.findall(r"\b(canao_[a-z_]+)\(", (CODEGEN_DIR / "canao_model.h").read_text())))


def _rename_header(level: str) -> str:
    lines = [f"/* Compiled with -include: the model's entry points of the {level} build get a prefix. */"]
    lines += [f"#define {sym} canao_{level}_{sym.removeprefix('canao_')}" for sym in model_symbols()]
    return "\n".join(lines) + "\n"


FIELDS = (  # canao_level's function pointers (canao_dispatch.h), in order
    "forward",
    "error_message",
    "abi_version",
    "arena_floats",
    "weight_floats",
    "graph_hash",
    "set_threads",
    "max_positions",
    "num_caches",
    "cache_floats",
    "num_outputs",
    "output_offset",
    "output_floats",
    "id_bound",
)


def _levels_source(levels: tuple[str, ...], sections: dict[str, tuple[str, str]]) -> str:
    """canao_levels.c: the dispatch table, with the renamed prototypes of canao_model.h per level; `sections`
    gives, per level, the (SIMD field, graph hash) of the weights section it reads."""
    header = (CODEGEN_DIR / "canao_model.h").read_text()
    prototypes = header[header.index("int canao_forward(") : header.rindex("#endif")].strip()
    lines = [
        "/* The SIMD levels compiled into this package, most capable first (canao_dispatch.h). */",
        "#include <stddef.h>",
        '#include "canao_dispatch.h"',
        "",
    ]
    for level in levels:
        renamed = re.sub(r"\bcanao_([a-z_]+)\(", rf"canao_{level}_\1(", prototypes)
        lines += [f"/* {level} */", renamed, ""]
    needs = {level: _cpu_needs(level) for level in levels}
    for level, bits in needs.items():
        if bits:
            lines += [f"static const canao_cpuid_bit needs_{level}[] = {{ /* {', '.join(bits)} */"]
            lines += [
                f"    {{{b.leaf}, {b.subleaf}, {REGISTERS.index(b.register)}, {b.bit}, 0x{b.xcr0:x}}},"
                for b in bits.values()
            ]
            lines += ["};"]
    lines += ["", "const canao_level canao_levels[] = {"]
    for level in levels:
        table = f"needs_{level}, {len(needs[level])}" if needs[level] else "NULL, 0"
        section, section_hash = sections[level]
        functions = ", ".join(f"canao_{level}_{f}" for f in FIELDS)
        lines.append(f'    {{"{level}", {functions}, {table}, "{section}", "{section_hash}"}},')
    lines += ["};", f"const int canao_n_levels = {len(levels)};", ""]
    return "\n".join(lines)


REGISTERS = ("eax", "ebx", "ecx", "edx")  # canao_cpuid_bit.reg


def _cpu_needs(level: str) -> dict[str, CpuidBit]:
    """The CPUID bits of the level's CPU flags, in name order (none for a baseline such as NEON)."""
    simd = SIMD_LEVELS[level]
    if simd.arch != "x86_64":
        return {}
    missing = sorted(set(simd.cpu_flags) - set(CPUID_BITS))
    if missing:
        raise ExportError(f"canao.device.CPUID_BITS lacks {missing}, which SIMD level {level} needs.")
    return {flag: CPUID_BITS[flag] for flag in sorted(simd.cpu_flags)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files_not_ours(path: Path) -> Optional[list[Path]]:
    """Entries of an existing export directory that the export did not write (None: not an export)."""
    manifest = path / MANIFEST
    if not manifest.exists():
        return None
    try:
        files = json.loads(manifest.read_text())["files"]
        names = {name.split("/")[0] for name in files} | {MANIFEST, "build"}
    except (ValueError, KeyError, TypeError):
        return None
    return [p for p in path.iterdir() if p.name not in names]


def jdk_include() -> Optional[Path]:
    """The JDK's include directory (jni.h), from javac on PATH; None without a JDK."""
    javac = shutil.which("javac")
    if javac is None:
        return None
    include = Path(javac).resolve().parents[1] / "include"
    return include if (include / "jni.h").exists() else None


def find_compiler(target: Target) -> Optional[str]:
    return next((cc for cc in target.compilers if shutil.which(cc)), None)


def export_artifact(
    artifact: Path, target: str, out: Path, *, prebuilt: bool = True, force: bool = False
) -> ExportResult:
    """Write the C package of `artifact` for `target` to `out` (see the module docstring)."""
    if target not in TARGETS:
        raise ExportError(f"unknown target {target!r}; choose one of {sorted(TARGETS)}.")
    t = TARGETS[target]
    source = read_artifact_source(artifact)
    lowered = source.lowered()
    levels = t.levels_for(source.precision.value)
    builds = {
        level: generate_for_target(lowered, BuildOptions(simd=level, precision=source.precision)) for level in levels
    }
    hashes = {level: graph_hash(graph) for level, (graph, _) in builds.items()}
    prepare_target(out, is_ours=_files_not_ours, force=force)
    tmp = temp_directory(out.parent, f".{out.name}.")
    try:
        files = _write_package(tmp, artifact, source, builds, t)
        built = _prebuild(tmp, t) if prebuilt else ()
        sizes = {name: (tmp / name).stat().st_size for name in files}
        manifest = {
            "version": EXPORT_VERSION,
            "target": t.name,
            "levels": list(levels),
            "graph_hashes": hashes,
            "files": {name: {"bytes": sizes[name], "sha256": _sha256(tmp / name)} for name in files},
            "prebuilt": list(built),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        replace_directory(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(out, t.name, levels, hashes, built, sizes)


def _write_package(
    tmp: Path, artifact: Path, source: ArtifactSource, builds: dict[str, tuple[Graph, str]], t: Target
) -> list[str]:
    """Every file of the package except the manifest and build/; returns their names."""
    names = []
    for level, (_, code) in builds.items():
        (tmp / f"kernel_{level}.c").write_text(code)
        (tmp / f"canao_rename_{level}.h").write_text(_rename_header(level))
        names += [f"kernel_{level}.c", f"canao_rename_{level}.h"]
    levels = tuple(builds)
    sections, readers = _shared_sections(builds)
    (tmp / "canao_levels.c").write_text(_levels_source(levels, readers))
    for name in ("canao_model.h", "canao_kernels.h"):
        shutil.copyfile(CODEGEN_DIR / name, tmp / name)
    for name in C_FILES:
        shutil.copyfile(C_DIR / name, tmp / name)
    (tmp / "java" / "ai" / "canao").mkdir(parents=True)
    for name in JAVA_FILES:
        shutil.copyfile(JAVA_DIR / name.removeprefix("java/"), tmp / name)
    write_weights_file(tmp / "weights.bin", sections)
    names += ["canao_levels.c", "canao_model.h", "canao_kernels.h", *C_FILES, *JAVA_FILES, "weights.bin"]
    tokenizer_file = Path(artifact) / "tokenizer.json"
    if tokenizer_file.exists():
        from tokenizers import Tokenizer

        from canao.export.tokenizer_data import write_tokenizer_data

        write_tokenizer_data(Tokenizer.from_file(str(tokenizer_file)), tmp / "tokenizer.bin")
        names.append("tokenizer.bin")
    first = next(iter(builds.values()))[0]
    model = {
        "spec": source.spec.to_dict(),
        "task": source.task,
        "precision": source.precision.value,
        "target": t.name,
        "levels": list(levels),
        "graph_hashes": {level: graph_hash(graph) for level, (graph, _) in builds.items()},
        "outputs": list(first.outputs),
        "build": t.note,
    }
    (tmp / "model.json").write_text(json.dumps(model, indent=1))
    (tmp / "model.cfg").write_text(_runner_config(source.task))
    (tmp / "Makefile").write_text(_makefile(levels, t.name))
    (tmp / "CMakeLists.txt").write_text(_cmakelists(levels))
    return [*names, "model.json", "model.cfg", "Makefile", "CMakeLists.txt"]


def _shared_sections(builds: dict[str, tuple[Graph, str]]) -> tuple[list[Section], dict[str, tuple[str, str]]]:
    """The weights sections, one per distinct packed blob (levels of one vector width often pack the same
    panels: an int8 model's AVX-512, VNNI and AMX builds read one), named after the least capable level that
    reads it; and per level, the (SIMD field, graph hash) of the section it reads."""
    owners: dict[bytes, tuple[str, str, np.ndarray]] = {}
    reader_of: dict[str, bytes] = {}
    for level, (graph, _) in reversed(builds.items()):  # least capable first: it names a shared section
        blob = weight_blob(graph)
        key = hashlib.sha256(np.ascontiguousarray(blob).data).digest()  # no copy of the (large) blob
        owners.setdefault(key, (level, graph_hash(graph), blob))
        reader_of[level] = key
    sections = [Section(blob, digest, level) for level, digest, blob in reversed(owners.values())]
    return sections, {level: owners[key][:2] for level, key in reader_of.items()}


def _runner_config(task: dict) -> str:
    """model.cfg: what canao-model-run needs to know, as lines a C program reads with sscanf."""
    lines = [f"task {task['task']}"]
    for index, label in sorted((int(k), str(v)) for k, v in (task.get("labels") or {}).items()):
        lines.append(f"label {index} {' '.join(label.split())}")
    return "\n".join(lines) + "\n"


def _prebuild(tmp: Path, t: Target) -> tuple[str, ...]:
    """Build libcanao_model.a/.so with the target's compiler when this machine has one."""
    cc = find_compiler(t)
    if cc is None or shutil.which("make") is None:
        return ()
    goals = ["all", *(["jni"] if jdk_include() is not None else [])]
    proc = subprocess.run(["make", "-s", f"CC={cc}", *goals], cwd=tmp, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ExportError(f"building the exported package with {cc} failed:\n{proc.stderr[-4000:]}")
    for obj in (tmp / "build").glob("*.o"):
        obj.unlink()
    return tuple(sorted(f"build/{p.name}" for p in (tmp / "build").iterdir()))
