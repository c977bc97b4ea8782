"""The timing executable around a generated graph: the on-device half of latency profiling.

The profiler of canao.latency runs it, locally or on another device through
a command template, and reads one time per line. Its main() lives in
profiler_main.c (plain C, compiled as it is, linked with the generated
model through the ABI of canao_model.h): it fills every input itself, runs
`warmup` untimed calls and prints the wall time of each of `reps` calls in
milliseconds, measured with CLOCK_MONOTONIC around canao_forward.

Usage of the executable: prof WEIGHTS.bin T PAST WARMUP REPS

Example::

    timing = build_timing_executable(lowered, BuildOptions(simd="neon", compiler="aarch64-linux-gnu-gcc"))
"""

from __future__ import annotations

from pathlib import Path

PROFILER_MAIN = Path(__file__).with_name("profiler_main.c")
