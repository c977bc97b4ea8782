"""The SIMD level an x86-64 export runs on this machine (its C API picks the most capable one the CPU has)."""

from canao.device import host_simd

PICKED_LEVEL = "avx512" if host_simd() in ("avx512", "avx512bf16") else "avx2"
