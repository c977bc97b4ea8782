"""The latency estimates canao's compiler-aware predictor has to beat: FLOPs fitted linearly, and a roofline.

CANAO's claim (arXiv 2009.06823, Sec. 3.3) is that latency measured from the compiler's own blocks ranks
and sizes architectures better than FLOPs. These baselines make the claim testable on the same profile:

- `FittedFlops`: ms = a * GFLOPs + b, least squares over the profile's whole calibration models (the same
  points the predictor calibrates on), so it is in ms and costs nothing to build.
- `Roofline`: per layer, FLOPs / compute rate + bytes moved / memory bandwidth, summed over the model; the
  rate is the best any layer block of the profile reached (what canao's kernels sustain on this device),
  the bandwidth is measured (`measure_bandwidth_gbs`, a large copy) or given.

Both cover encoders (a whole sequence per call), the workload the benchmark scores.

Example::

    flops = FittedFlops.fit(profile)
    roof = Roofline.from_profile(profile, measure_bandwidth_gbs())
    flops.predict_ms(spec, 128), roof.predict_ms(spec, 128)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from canao.arch import ArchSpec, LayerSpec
from canao.errors import SpecError
from canao.latency.profile import DeviceProfile, parse_block_key

BYTES_PER_WEIGHT = {"fp32": 4, "bf16": 2, "int8": 1}
ACTIVATION_BYTES = 4  # activations stay fp32 between fused kernels in every precision


def _encoder_only(spec: ArchSpec) -> None:
    if spec.kind != "encoder":
        raise SpecError(f"the FLOPs and roofline baselines cover encoders, but got a {spec.kind}.")


def gflops(spec: ArchSpec, seq_len: int) -> float:
    _encoder_only(spec)
    return spec.flops(seq_len) / 1e9


@dataclass(frozen=True)
class FittedFlops:
    """ms = ms_per_gflop * GFLOPs + offset_ms, fitted on the profile's whole-model calibration points."""

    ms_per_gflop: float
    offset_ms: float

    @classmethod
    def fit(cls, profile: DeviceProfile) -> "FittedFlops":
        points = [(gflops(ArchSpec.from_dict(c["spec"]), c["seq_len"]), c["median_ms"]) for c in profile.calibration]
        if len(points) < 2:
            raise SpecError("fitting FLOPs to latency needs at least 2 calibration models in the profile.")
        x, y = np.array(points).T
        slope, offset = np.polyfit(x, y, 1)
        return cls(float(slope), float(offset))

    def predict_ms(self, spec: ArchSpec, seq_len: int) -> float:
        return self.ms_per_gflop * gflops(spec, seq_len) + self.offset_ms


def layer_flops(hidden: int, layer: LayerSpec, seq_len: int) -> float:
    t, h, a, f = seq_len, hidden, layer.attn_width, layer.ffn
    return 2.0 * (4 * t * h * a + 2 * t * t * a + 2 * t * h * f)


def layer_bytes(hidden: int, layer: LayerSpec, seq_len: int, precision: str) -> float:
    """Weights read once, plus every activation each op reads and writes (attention scores included)."""
    t, h, a, f = seq_len, hidden, layer.attn_width, layer.ffn
    weights = (4 * h * a + 2 * h * f) * BYTES_PER_WEIGHT[precision]
    # QKV reads x and writes 3a; attention reads 3a, writes scores (read back) and a; out proj, FFN up/down,
    # two residual LayerNorms
    activations = t * (h + 3 * a + 3 * a + a + a + h + h + f + f + h + 2 * h) + 2 * t * t * layer.heads
    return weights + activations * ACTIVATION_BYTES


@dataclass(frozen=True)
class Roofline:
    """Sum over layers of FLOPs / rate + bytes / bandwidth (plus the embedding's and head's traffic)."""

    gflops_per_s: float
    gbytes_per_s: float
    precision: str = "fp32"

    @classmethod
    def from_profile(cls, profile: DeviceProfile, gbytes_per_s: float) -> "Roofline":
        """The compute rate is the best a layer block of the profile reached (FLOPs / its latency)."""
        space, rate = profile.space, 0.0
        for key, entry in profile.blocks.items():
            block, hidden, seq, heads, ffn = parse_block_key(key)
            if block != "layer":
                continue
            layer = LayerSpec(heads, space.head_dim, ffn)
            rate = max(rate, layer_flops(hidden, layer, seq) / (entry["median_ms"] * 1e6))
        if rate <= 0:
            raise SpecError("the profile holds no layer blocks to derive a compute rate from.")
        return cls(rate, gbytes_per_s, profile.precision)

    def predict_ms(self, spec: ArchSpec, seq_len: int) -> float:
        _encoder_only(spec)
        t, h = seq_len, spec.hidden
        seconds = 0.0
        for layer in spec.layers:
            seconds += layer_flops(h, layer, t) / (self.gflops_per_s * 1e9)
            seconds += layer_bytes(h, layer, t, self.precision) / (self.gbytes_per_s * 1e9)
        edges = 3 * t * h * ACTIVATION_BYTES + (h * h + 2 * h) * BYTES_PER_WEIGHT[self.precision]  # embed + pooler
        seconds += edges / (self.gbytes_per_s * 1e9) + 2 * h * h / (self.gflops_per_s * 1e9)
        return seconds * 1e3


def measure_bandwidth_gbs(megabytes: int = 256, repeats: int = 5) -> float:
    """Memory bandwidth (GB/s of bytes read + written) of a large array copy on this machine, best of `repeats`."""
    src = np.ones(megabytes * (1 << 20) // 8, dtype=np.float64)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best / 1e9
