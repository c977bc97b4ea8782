"""The compiler-aware latency predictor: block latencies composed, interpolated and calibrated.

predict_ms(spec, seq_len) = a_T * (embed(H, T) + sum_i layer(H, heads_i, ffn_i, T) + head(H, T))
                           + c_T * layers + b_T

Block latencies come from the device profile (each block's fastest
drift-corrected sweep, see profile.py). Layer latencies on the grid
are first made monotone (pool-adjacent-violators along the FFN and heads
axes: more work is never faster, and measurement noise should not say
otherwise); off-grid sizes are interpolated multilinearly in (hidden, heads,
FFN) and linearly in T. (a_T, c_T, b_T) are fitted by least squares on the
whole models measured during profiling, one set per profiled length
(interpolated linearly in T like the blocks), and absorb what composition
misses: the call overhead and cache effects between layers. c_T, a cost per
layer, is fitted only where the calibration models span 3+ depths (else 0):
a layer run inside a model pays for handing its output to the next one,
which a block timed alone does not (Xeon, fp32, 128 tokens, 6 stored
profiles: 2-layer models were predicted 4-9% low without it; MAPE
2.68 -> 2.45%). Why per length: those
effects are not proportional across lengths. A block timed alone keeps its
weights in cache; in a whole model they stream from the shared cache, which
short sequences feel most: on a Xeon, fp32, whole models at 32 tokens ran
~20% above their composed blocks, at 384 ~1%. One fit over all lengths left
the 32-token predictions 15% off (MAPE; 7% per length). Latencies in the profile are
each block's fastest-sweep median (see profile.py), so predictions are of
the machine in its quiet state. Everything the predictor
needs is in the profile file; nothing is repeated elsewhere.

Every prediction carries an uncertainty (`uncertainty_ms`): the blocks'
sweep spreads, added linearly (drift makes them move together, so they do not
cancel) and scaled like the prediction, plus twice the RMS residual of the
calibration fit. The search keeps that margin under its budget.

Why composition and not a learned model: blocks are what the compiler emits
and what the search varies, so a per-block table is exact at the grid points
and needs no training data beyond the profile; measured error is reported by
benchmarks/latency_model.py.

Example::

    predictor = LatencyPredictor(DeviceProfile.load(Path("profile.json")))
    predictor.predict_ms(spec, seq_len=128)
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from canao.arch import ArchSpec
from canao.errors import SpecError
from canao.latency.device import Executor, executor_fingerprint, make_executor
from canao.latency.profile import BlockTiming, DeviceProfile, ProfileError, block_key, measure_model


def isotonic(values: Sequence[float]) -> list[float]:
    """Pool-adjacent-violators: the closest non-decreasing sequence (least squares)."""
    blocks: list[list[float]] = []  # [sum, count]
    for v in values:
        blocks.append([float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    out: list[float] = []
    for s, c in blocks:
        out += [s / c] * int(c)
    return out


def _brackets(axis: Sequence[int], x: float) -> list[tuple[int, float]]:
    """Indices and weights of the grid points that linearly inter/extrapolate to x."""
    if len(axis) == 1:
        return [(0, 1.0)]
    i = min(max(bisect.bisect_right(axis, x) - 1, 0), len(axis) - 2)
    t = (x - axis[i]) / (axis[i + 1] - axis[i])
    return [(i, 1.0 - t), (i + 1, t)]


RESIDUAL_WIDTH = 2.0  # RMS residuals in the uncertainty: ~95% of a normal scatter. Xeon fp32 128, 6 profiles x 40
# models: 77% of the measured latencies lay within the band with 1x, 92% with 2x.


def _fit(points: Sequence[tuple[float, float, float]]) -> tuple[float, float, float, float]:
    """(scale, per-layer ms, offset) of the least-squares fit of whole models (measured) to composed blocks and
    depth, and its RMS residual; points are (composed ms, layers, measured ms). The per-layer term is fitted
    only with 5+ models over 3+ depths (fewer cannot tell it from the scale) and kept only if non-negative."""
    if len(points) < 2:
        return 1.0, 0.0, 0.0, 0.0
    x, depth, y = np.array(points, dtype=np.float64).T
    scale, per_layer, offset = 0.0, 0.0, 0.0
    if len(points) >= 5 and len(set(depth)) >= 3:
        scale, per_layer, offset = np.linalg.lstsq(np.c_[x, depth, np.ones_like(x)], y, rcond=None)[0]
    if scale <= 0 or per_layer < 0:
        (scale, offset), per_layer = np.polyfit(x, y, 1), 0.0
    if scale <= 0:  # degenerate calibration set: keep the composition, rescale only
        scale, offset = float(np.mean(y / x)), 0.0
    residual = float(np.sqrt(np.mean((scale * x + per_layer * depth + offset - y) ** 2)))
    return float(scale), float(per_layer), float(offset), residual


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""

    def ranks(values: Sequence[float]) -> np.ndarray:
        x = np.asarray(values, dtype=np.float64)
        order = np.argsort(x, kind="mergesort")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        for value in np.unique(x):
            tied = x == value
            r[tied] = r[tied].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


class LatencyPredictor:
    """Predicts compiled end-to-end latency (ms) of any ArchSpec of the profiled space."""

    def __init__(self, profile: DeviceProfile) -> None:
        self.profile = profile
        space = profile.space
        self.kind, self.head_dim = space.kind, space.head_dim
        self.hiddens = sorted(space.hidden_choices)
        self.heads = sorted(space.heads_choices)
        self.ffns = sorted(space.ffn_choices)
        self.seq_lens = sorted(profile.config["seq_lens"])
        self._layer = self._monotone_layer_grid()
        # whole models (length, composed blocks, measured): fitted over all lengths (the fallback) and per length
        points = []
        for c in profile.calibration:
            spec = ArchSpec.from_dict(c["spec"])
            points.append((c["seq_len"], (self.raw_ms(spec, c["seq_len"]), spec.num_layers, c["median_ms"])))
        overall = _fit([p for _, p in points])
        self._fits, self._smallest = {}, {}
        for t in self.seq_lens:
            at_t = [p for length, p in points if length == t]
            self._fits[t] = _fit(at_t) if len(at_t) >= 3 else overall
            xs = [p[0] for p in at_t] or [p[0] for _, p in points]
            self._smallest[t] = min(xs) if xs else 0.0

    def _block(self, block: str, h: int, t: int, heads: int = 0, ffn: int = 0) -> float:
        key = block_key(block, h, t, heads, ffn)
        if key not in self.profile.blocks:
            raise ProfileError(f"the profile lacks block {key}; it is incomplete: resume `canao profile`.")
        return float(self.profile.blocks[key]["median_ms"])

    def _monotone_layer_grid(self) -> dict[tuple[int, int], np.ndarray]:
        grids = {}
        for h in self.hiddens:
            for t in self.seq_lens:
                g = np.array([[self._block("layer", h, t, a, f) for f in self.ffns] for a in self.heads])
                for _ in range(2):  # alternate axes until both are monotone (two rounds suffice in practice)
                    g = np.array([isotonic(row) for row in g])
                    g = np.array([isotonic(col) for col in g.T]).T
                grids[(h, t)] = g
        return grids

    def _layer_ms(self, h: int, heads: int, ffn: int, t: int) -> float:
        total = 0.0
        for ih, wh in _brackets(self.hiddens, h):
            grid = self._layer[(self.hiddens[ih], t)]
            for ia, wa in _brackets(self.heads, heads):
                for jf, wf in _brackets(self.ffns, ffn):
                    total += wh * wa * wf * grid[ia, jf]
        return total

    def _edge_ms(self, block: str, h: int, t: int) -> float:
        return sum(w * self._block(block, self.hiddens[i], t) for i, w in _brackets(self.hiddens, h))

    def _raw_ms_at(self, spec: ArchSpec, t: int) -> float:
        h = spec.hidden
        layers = sum(self._layer_ms(h, x.heads, x.ffn, t) for x in spec.layers)
        return self._edge_ms("embed", h, t) + layers + self._edge_ms("head", h, t)

    def raw_ms(self, spec: ArchSpec, seq_len: int) -> float:
        """Sum of the block latencies, before calibration (interpolated linearly in T)."""
        self._check(spec, seq_len)
        return sum(w * self._raw_ms_at(spec, self.seq_lens[i]) for i, w in _brackets(self.seq_lens, seq_len))

    def _check(self, spec: ArchSpec, seq_len: int) -> None:
        """Refuse a spec or length the profile does not cover, naming what to change."""
        if spec.kind != self.kind:
            raise SpecError(f"the profile is for {self.kind}s, but the spec is a {spec.kind}.")
        bad = [x.head_dim for x in spec.layers if x.head_dim != self.head_dim]
        if bad:
            raise SpecError(f"`head_dim` must be {self.head_dim} (the profiled head size), but got {bad[0]}.")
        if not self.seq_lens[0] <= seq_len <= self.seq_lens[-1]:
            raise SpecError(
                f"`seq_len` must lie in the profiled range {self.seq_lens[0]}..{self.seq_lens[-1]}, "
                f"but got {seq_len}; profile with --seq-lens covering it."
            )

    def _spread(self, block: str, h: int, t: int, heads: int = 0, ffn: int = 0) -> float:
        return float(self.profile.blocks.get(block_key(block, h, t, heads, ffn), {}).get("spread", 0.0))

    def uncertainty_ms(self, spec: ArchSpec, seq_len: int = 128) -> float:
        """How far the true latency may lie from predict_ms: the blocks' sweep spreads (ms, added linearly,
        interpolated like the blocks) scaled like the prediction, plus RESIDUAL_WIDTH x the calibration's RMS residual
        (per length)."""
        self._check(spec, seq_len)
        result = 0.0
        for it, wt in _brackets(self.seq_lens, seq_len):
            t = self.seq_lens[it]
            total = 0.0
            for ih, wh in _brackets(self.hiddens, spec.hidden):
                h, w = self.hiddens[ih], abs(wh)
                total += w * sum(self._spread(b, h, t) * self._block(b, h, t) for b in ("embed", "head"))
                for layer in spec.layers:
                    for ia, wa in _brackets(self.heads, layer.heads):
                        for jf, wf in _brackets(self.ffns, layer.ffn):
                            a, f = self.heads[ia], self.ffns[jf]
                            total += (
                                w * abs(wa * wf) * self._spread("layer", h, t, a, f) * self._block("layer", h, t, a, f)
                            )
            scale, _, _, residual = self._fits[t]
            result += abs(wt) * (scale * total + RESIDUAL_WIDTH * residual)
        return result

    def calibration_at(self, seq_len: int) -> tuple[float, float, float, float]:
        """(scale, per-layer ms, offset, RMS residual ms) of the whole-model fit at `seq_len`, interpolated
        between lengths."""
        fit = np.zeros(4)
        for i, w in _brackets(self.seq_lens, seq_len):
            fit += w * np.array(self._fits[self.seq_lens[i]])
        return float(fit[0]), float(fit[1]), float(fit[2]), float(fit[3])

    def _line_at(self, t: int, raw: float, layers: int) -> tuple[float, float, float]:
        """(scale, offset, layers' cost): a `layers`-deep model of composed `raw` ms at profiled length `t` is
        predicted scale * raw + offset + layers' cost. Below the smallest calibrated model a negative offset
        (with the layers' cost) would extrapolate to near-zero or negative latencies (a search would then 'meet'
        any budget), so there the prediction is proportional, through the fit at that model."""
        scale, per_layer, offset, _ = self._fits[t]
        cost = per_layer * layers
        smallest = self._smallest[t]
        if offset + cost >= 0 or raw >= smallest:
            return scale, offset, cost
        at_smallest = scale * smallest + offset + cost
        return (at_smallest / smallest, 0.0, 0.0) if at_smallest > 0 else (scale, 0.0, 0.0)

    def predict_ms(self, spec: ArchSpec, seq_len: int = 128) -> float:
        self._check(spec, seq_len)
        total = 0.0
        for i, w in _brackets(self.seq_lens, seq_len):
            t = self.seq_lens[i]
            raw = self._raw_ms_at(spec, t)
            scale, offset, cost = self._line_at(t, raw, spec.num_layers)
            total += w * (scale * raw + offset + cost)
        return total

    def breakdown_ms(self, spec: ArchSpec, seq_len: int = 128) -> dict[str, float]:
        """predict_ms split into the fixed part (embedding, head, calibration offset) and the layers' part (with
        the calibration's per-layer cost)."""
        self._check(spec, seq_len)
        fixed = layers = 0.0
        for i, w in _brackets(self.seq_lens, seq_len):
            t = self.seq_lens[i]
            edges = self._edge_ms("embed", spec.hidden, t) + self._edge_ms("head", spec.hidden, t)
            in_layers = sum(self._layer_ms(spec.hidden, x.heads, x.ffn, t) for x in spec.layers)
            scale, offset, cost = self._line_at(t, edges + in_layers, spec.num_layers)
            fixed += w * (scale * edges + offset)
            layers += w * (scale * in_layers + cost)
        return {"embedding and head": fixed, "layers": layers}


@dataclass(frozen=True)
class LatencyCheck:
    """`canao latency`: one architecture's predicted latency and, optionally, its measured one."""

    spec: ArchSpec
    precision: str
    predicted_ms: float
    uncertainty_ms: float
    predict_us: float  # time the prediction took
    measured: Optional[BlockTiming]
    device: str  # the profile's device description
    current_kernels: bool = True  # False: the profile timed another canao version's kernels


def measuring_executor(profile: DeviceProfile, device: Optional[str], source: Path | str = "the profile") -> Executor:
    """The executor that reaches the profile's own device, never another one.

    Without `device`, that is this machine when the profile was measured here; with `device` (the template
    the profile was made with, e.g. "ssh phone {cmd}"), the executor it builds must have the profile's key."""
    reach = profile.executor or {}
    simd, compiler = reach.get("simd"), reach.get("compiler")
    if device is None:
        local = make_executor("local", simd=simd, compiler=compiler)
        if executor_fingerprint(local) == profile.device:
            return local
        hint = f" (`{reach['template']}`)" if reach.get("template") else ""
        raise ProfileError(
            f"{source} was measured on device {profile.device} ({profile.device_description}), not on this machine; "
            f"measuring goes through that device: pass --device with the template it was profiled with{hint}, "
            "or --no-measure to predict only."
        )
    executor = make_executor(device, simd=simd, compiler=compiler)
    if executor_fingerprint(executor) != profile.device:
        raise ProfileError(
            f"--device {device!r} reaches device {executor_fingerprint(executor)}, but {source} was measured on "
            f"{profile.device} ({profile.device_description}); pass the template, --simd and compiler it was "
            "profiled with."
        )
    return executor


def predict_and_measure(
    spec: ArchSpec,
    profile_path: Path,
    seq_len: int,
    *,
    measure: bool = True,
    threads: int = 2,
    device: Optional[str] = None,
) -> LatencyCheck:
    """Predict `spec` from any device's profile and (with `measure`) compile and time it on that device."""
    profile = DeviceProfile.load(profile_path)
    executor = measuring_executor(profile, device, profile_path) if measure else None
    predictor = LatencyPredictor(profile)
    start = time.perf_counter()
    predicted = predictor.predict_ms(spec, seq_len)
    predict_us = (time.perf_counter() - start) * 1e6
    uncertainty = predictor.uncertainty_ms(spec, seq_len)
    measured = (
        measure_model(spec, executor, seq_len, threads=threads, precision=profile.precision) if executor else None
    )
    return LatencyCheck(
        spec,
        profile.precision,
        predicted,
        uncertainty,
        predict_us,
        measured,
        profile.device_description,
        profile.current_kernels,
    )
