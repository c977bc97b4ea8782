"""The SIMD level an x86-64 export runs on this machine (its C API picks the most capable one the CPU has)."""

from canao.device import host_simd, simd_level

X86_VECTOR_HOSTS = ("avx2", "avx512", "avx512bf16", "amx")  # hosts that run the exports' AVX2 (or wider) code
PICKED_LEVEL = "avx512" if "avx512f" in simd_level(host_simd()).cpu_flags else "avx2"
