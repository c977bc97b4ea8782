"""Device profiles: compiled building blocks timed on the target, saved as a versioned JSON file.

CANAO's latency model is compiler-aware (arXiv 2009.06823, Sec. 3.3): it is
built from latencies of the blocks canao's compiler emits, measured on the
device, not from FLOPs or framework timings. For every hidden size of the
search space and every sequence length that matters, the profiler compiles
and times the embedding block, the head block and one transformer layer at
each (heads, FFN) grid point, each as its own graph (canao.compiler.lower.
lower_block) run by a native timing executable. Each block gets `warmup`
untimed and `reps` timed calls; samples further than 4 MADs from the median
are rejected and the median and spread kept. The whole grid is measured in
`passes` sweeps, minutes apart, each in its own shuffled order, so no block
takes all its repetitions in one burst and no block always follows the same one.

A shared machine drifts (other tenants, frequency, a VM's host). A fixed
reference block is timed every `reference_every` measurements throughout the
run; each measurement is scaled by quiet / local reference, where local is the
reference interpolated at the moment of the measurement and quiet is the
reference's 10th percentile over the run, so a phase in which everything ran
10% slow is brought back to the quiet level. After correction a block's
latency is the smallest of its per-sweep medians (what is left of other
tenants' interference is one-sided), and its spread is the relative gap to
the next-smallest; blocks whose sweeps still disagree by more than
`agree_tol` are measured again (up to `extra_sweeps` more times). The spread
travels with the block into the predictor's uncertainty. A dozen whole
models of the space are also measured the same way, to calibrate what
composition misses (call overhead, cache effects between layers). The file is
written after every measurement, so an interrupted run resumes where it stopped.

Example::

    profile = profile_device(ProfileConfig(default_encoder_space()), make_executor("local"), Path("p.json"))
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from canao.arch import LIMITS, ArchSpec, LayerSpec, SearchSpace
from canao.compiler.build import BuildOptions, build_timing_executable
from canao.compiler.codegen import kernel_digest
from canao.compiler.codegen.c import weight_blob
from canao.compiler.ir import Graph
from canao.compiler.layout import Precision
from canao.compiler.lower import lower_block, lower_spec
from canao.device import describe_machine
from canao.errors import CanaoError, SpecError
from canao.latency.device import Executor, executor_fingerprint
from canao.storage import cache_root, exclusive_per, write_json_atomically

PROFILE_VERSION = 1
Progress = Callable[[str, int, int], None]


class ProfileError(CanaoError, ValueError):
    """A profile file is corrupt, of another version, or from another device."""


@dataclass(frozen=True)
class ProfileConfig:
    space: SearchSpace
    seq_lens: tuple[int, ...] = (64, 128, 256)  # encoder: tokens; decoder: context of one decode step
    threads: int = 2
    warmup: int = 5
    reps: int = 30
    calibration_models: int = 12
    passes: int = 3  # sweeps over the grid; a block's latency is its fastest (drift-corrected) sweep's median
    seed: int = 0
    precision: str = "fp32"  # of the compiled matrix products (fp32, bf16, int8): a profile is per precision
    reference_every: int = 10  # time the reference block after this many measurements (0: no drift correction)
    agree_tol: float = 0.05  # re-measure a block whose two fastest corrected sweeps differ by more than this
    extra_sweeps: int = 2  # at most this many re-measurements of a disagreeing block


@dataclass(frozen=True)
class BlockTiming:
    median_ms: float
    p10_ms: float
    p90_ms: float
    mad_ms: float  # median absolute deviation of the kept samples: the spread
    kept: int
    rejected: int


def robust_timing(samples: np.ndarray) -> BlockTiming:
    """Median and spread after rejecting samples more than 4 MADs from the median."""
    med = float(np.median(samples))
    mad = float(np.median(np.abs(samples - med))) or 1e-9
    kept = samples[np.abs(samples - med) <= 4 * 1.4826 * mad]
    p10, p50, p90 = np.percentile(kept, [10, 50, 90])
    return BlockTiming(
        float(p50),
        float(p10),
        float(p90),
        float(np.median(np.abs(kept - p50))),
        int(kept.size),
        int(samples.size - kept.size),
    )


def workload(kind: str, seq_len: int) -> tuple[int, int]:
    """(T, past) of one timed call: a whole sequence for an encoder, one decode step at `seq_len` context."""
    return (seq_len, 0) if kind == "encoder" else (1, seq_len - 1)


def synthetic_weights(spec: ArchSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random weights under canao's backbone names (N(0, 0.02), LayerNorm 1/0): timing does not depend on values."""
    h = spec.hidden
    shapes: dict[str, tuple[int, ...]] = {
        "embed.token.weight": (spec.vocab_size, h),
        "embed.position.weight": (spec.max_positions, h),
    }
    norms = ["final_norm"] if spec.kind == "decoder" else ["embed.norm"]
    if spec.kind == "encoder":
        shapes["embed.token_type.weight"] = (spec.type_vocab_size, h)
        shapes.update({"pooler.weight": (h, h), "pooler.bias": (h,)})
    for i, layer in enumerate(spec.layers):
        p, a, f = f"layers.{i}.", layer.attn_width, layer.ffn
        for name in "qkv":
            shapes[f"{p}attn.{name}.weight"], shapes[f"{p}attn.{name}.bias"] = (a, h), (a,)
        shapes.update(
            {
                f"{p}attn.out.weight": (h, a),
                f"{p}attn.out.bias": (h,),
                f"{p}ffn.up.weight": (f, h),
                f"{p}ffn.up.bias": (f,),
                f"{p}ffn.down.weight": (h, f),
                f"{p}ffn.down.bias": (h,),
            }
        )
        norms += [f"{p}attn_norm", f"{p}ffn_norm"]
    weights = {k: (rng.standard_normal(s) * 0.02).astype(np.float32) for k, s in shapes.items()}
    for norm in norms:
        weights[f"{norm}.weight"], weights[f"{norm}.bias"] = np.ones(h, np.float32), np.zeros(h, np.float32)
    return weights


def build_options(executor: Executor, threads: int, seq_len: int, kind: str, precision: str) -> BuildOptions:
    """How blocks and whole models are compiled for the executor's target (tuned for the timed workload)."""
    return BuildOptions(
        simd=executor.simd,
        compiler=executor.compiler,
        threads=threads,
        precision=Precision.parse(precision),
        tune_seq_len=workload(kind, seq_len)[0],
    )


def time_graph(
    lowered: Graph, executor: Executor, options: BuildOptions, seq_len: int, warmup: int, reps: int, workdir: Path
) -> BlockTiming:
    """Compile `lowered` into a timing executable for the executor's target and time one workload on it."""
    timing = build_timing_executable(lowered, options)
    weights = workdir / "weights.bin"
    weight_blob(timing.graph).tofile(weights)
    t, past = workload(timing.graph.meta["kind"], seq_len)
    out = executor.run([str(timing.executable), str(weights), str(t), str(past), str(warmup), str(reps)])
    samples = np.array([float(line) for line in out.split()], dtype=np.float64)
    if samples.size != reps:
        raise ProfileError(f"the timing executable printed {samples.size} times, expected {reps}.")
    return robust_timing(samples)


def block_key(block: str, hidden: int, seq_len: int, heads: int = 0, ffn: int = 0) -> str:
    return f"{block}|H{hidden}|A{heads}|F{ffn}|T{seq_len}"


def parse_block_key(key: str) -> tuple[str, int, int, int, int]:
    """(block, hidden, seq_len, heads, ffn) of a block_key: the inverse of block_key, in its argument order."""
    block, hidden, heads, ffn, seq = key.split("|")
    return block, int(hidden[1:]), int(seq[1:]), int(heads[1:]), int(ffn[1:])


def block_spec(space: SearchSpace, hidden: int, heads: int, ffn: int) -> ArchSpec:
    return ArchSpec(space.kind, space.vocab_size, space.max_positions, hidden, (LayerSpec(heads, space.head_dim, ffn),))


def _grid(config: ProfileConfig) -> list[tuple[str, int, int, int, int]]:
    space, jobs = config.space, []
    for seq in config.seq_lens:
        for h in space.hidden_choices:
            jobs += [("embed", h, 0, 0, seq), ("head", h, 0, 0, seq)]
            jobs += [("layer", h, a, f, seq) for a in space.heads_choices for f in space.ffn_choices]
    return jobs


@dataclass
class DeviceProfile:
    """Measured block latencies of one device, plus whole-model calibration points."""

    device: str
    device_description: str
    machine: dict
    config: dict
    blocks: dict[str, dict] = field(default_factory=dict)
    calibration: list[dict] = field(default_factory=list)
    version: int = PROFILE_VERSION
    executor: dict = field(default_factory=dict)  # how the device was reached: name, template, simd, compiler
    reference: list[dict] = field(default_factory=list)  # the reference block's timings: {"at", "median_ms"}
    clock: int = 0  # measurements taken so far; each sweep and reference timing records its `at`

    @property
    def space(self) -> SearchSpace:
        return SearchSpace.from_json(json.dumps(self.config["space"]))

    @property
    def precision(self) -> str:
        return str(self.config.get("precision", "fp32"))

    @property
    def current_kernels(self) -> bool:
        """Whether the blocks were timed with today's compiled kernels (profiles from before the digest: no)."""
        return self.config.get("kernels") == kernel_digest()

    def save(self, path: Path) -> None:
        write_json_atomically(path, asdict(self))

    @classmethod
    def load(cls, path: Path, *, device: Optional[str] = None) -> "DeviceProfile":
        """Read a profile; refuse corrupt files, other versions and (if `device` is given) other devices."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise ProfileError(f"{path}: no such profile; create one with `canao profile`.") from err
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
            raise ProfileError(
                f"{path}: corrupt profile ({type(err).__name__}: {str(err)[:200]}); delete it and run `canao "
                "profile` again."
            ) from None
        except OSError as err:  # a directory, unreadable
            raise ProfileError(f"{path}: cannot be read ({err.strerror or err}).") from None
        if not isinstance(data, dict) or data.get("version") != PROFILE_VERSION:
            raise ProfileError(
                f"{path}: profile version {data.get('version') if isinstance(data, dict) else '?'} "
                f"is not {PROFILE_VERSION}; run `canao profile` again."
            )
        try:
            profile = cls(**data)
            _ = profile.space  # parsing it validates the stored search space
        except (TypeError, ValueError, KeyError) as err:
            raise ProfileError(f"{path}: malformed profile ({err}).") from err
        if device is not None and profile.device != device:
            raise ProfileError(
                f"{path} was measured on device {profile.device} ({profile.device_description}), "
                f"not on this one ({device}); profile this device with `canao profile`."
            )
        return profile


def _settings(config: ProfileConfig) -> dict:
    """The profile's settings as stored in its file (a resumed run must match them)."""
    return {
        "space": json.loads(config.space.to_json()),
        "seq_lens": list(config.seq_lens),
        "threads": config.threads,
        "warmup": config.warmup,
        "reps": config.reps,
        "calibration_models": config.calibration_models,
        "passes": config.passes,
        "seed": config.seed,
        "precision": config.precision,
        "reference_every": config.reference_every,
        "agree_tol": config.agree_tol,
        "extra_sweeps": config.extra_sweeps,
        "kernels": kernel_digest(),
    }


def _new_profile(config: ProfileConfig, executor: Executor) -> DeviceProfile:
    machine = json.loads(json.dumps(describe_machine().to_dict()))  # as it reads back from the file
    reach = {"name": executor.name, "template": executor.template, "simd": executor.simd, "compiler": executor.compiler}
    return DeviceProfile(
        executor_fingerprint(executor), executor.description, machine, _settings(config), executor=reach
    )


def _measure_block(
    job: tuple[str, int, int, int, int], config: ProfileConfig, executor: Executor, workdir: Path
) -> BlockTiming:
    block, h, heads, ffn, seq = job
    space = config.space
    spec = block_spec(space, h, heads or space.heads_choices[0], ffn or space.ffn_choices[0])
    if block == "layer":  # a layer reads no embedding table: skip drawing vocab x hidden random weights
        spec = spec.replace(vocab_size=1)
    weights = synthetic_weights(spec, np.random.default_rng(config.seed))
    options = build_options(executor, config.threads, seq, space.kind, config.precision)
    return time_graph(lower_block(spec, weights, block), executor, options, seq, config.warmup, config.reps, workdir)


def measure_model(
    spec: ArchSpec,
    executor: Executor,
    seq_len: int,
    *,
    threads: int = 2,
    warmup: int = 5,
    reps: int = 30,
    seed: int = 0,
    precision: str = "fp32",
) -> BlockTiming:
    """End-to-end compiled latency of a whole model (random weights) on the executor's device."""
    weights = synthetic_weights(spec, np.random.default_rng(seed))
    options = build_options(executor, threads, seq_len, spec.kind, precision)
    with tempfile.TemporaryDirectory() as tmp:
        return time_graph(lower_spec(spec, weights), executor, options, seq_len, warmup, reps, Path(tmp))


QUIET_PERCENTILE = 10  # the reference's quiet level: this percentile of its smoothed timings over the run
DRIFT_WINDOW = 5  # reference timings in the rolling median that smooths the reference's own noise
DRIFT_BAND = 0.06  # least excess over the quiet level that counts as drift (4x the reference's noise if more)


def _smoothed_reference(reference: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clock, timings, smoothed): the reference timings and the same under a rolling median of DRIFT_WINDOW,
    so one noisy timing of the reference block (an idle VM reads it +-7% apart) does not pass for a change of
    the machine's speed."""
    at = np.array([r["at"] for r in reference], dtype=np.float64)
    level = np.array([r["median_ms"] for r in reference], dtype=np.float64)
    half = DRIFT_WINDOW // 2
    smooth = np.array([np.median(level[max(0, i - half) : i + half + 1]) for i in range(len(level))])
    return at, level, smooth


def _quiet(smooth: np.ndarray) -> float:
    return float(np.percentile(smooth, QUIET_PERCENTILE))


def _band(level: np.ndarray, smooth: np.ndarray) -> float:
    return max(DRIFT_BAND, 4.0 * float(np.median(np.abs(level / smooth - 1.0))))


def quiet_level(reference: list[dict]) -> float:
    """The reference block's latency when the machine is quiet: a low percentile of its smoothed timings."""
    return _quiet(_smoothed_reference(reference)[2])


def drift_band(reference: list[dict]) -> float:
    """How far above the quiet level the smoothed reference may read before it counts as drift: DRIFT_BAND,
    or 4x the reference's own noise (median relative distance of its timings from the smoothed series)."""
    if len(reference) < 2:
        return DRIFT_BAND
    return _band(*_smoothed_reference(reference)[1:])


def drift_factor(reference: list[dict], quiet: Optional[float] = None) -> Callable[[float], float]:
    """factor(at): quiet / local level of the reference block where the machine drifted, else 1 -- to scale a
    measurement taken at clock `at`.

    The local level is the smoothed reference series (see _smoothed_reference) interpolated linearly at `at`
    (the nearest timing outside them). Only a level more than drift_band above `quiet` is corrected, and then
    fully: correcting every wobble of one reference block injects its noise into every block (measured on an
    idle Xeon: MAPE 4.6% with, 2.8% without), while a slow stretch of the machine (load, a frequency drop) is
    still brought back. `quiet` defaults to this series' own quiet level (pass a profile's to bring other
    measurements to the same level). With fewer than two reference timings the factor is 1."""
    if len(reference) < 2:
        return lambda at: 1.0
    at, level, smooth = _smoothed_reference(reference)
    target = _quiet(smooth) if quiet is None else quiet
    limit = target * (1.0 + _band(level, smooth))

    def factor(t: float) -> float:
        local = float(np.interp(t, at, smooth))
        return 1.0 if local <= limit else target / local

    return factor


def settle(entry: dict, factor: Callable[[float], float]) -> dict:
    """The entry's latency from its sweeps: smallest drift-corrected median, raw smallest and spread."""
    corrected = sorted(s["median_ms"] * (factor(s["at"]) if "at" in s else 1.0) for s in entry["sweeps"])
    raw = min(s["median_ms"] for s in entry["sweeps"])
    spread = (corrected[1] - corrected[0]) / corrected[0] if len(corrected) > 1 else 0.0
    return {**entry, "median_ms": corrected[0], "raw_ms": raw, "spread": spread}


def settle_profile(profile: DeviceProfile) -> None:
    """Recompute every block's and calibration model's latency with the run's whole reference series."""
    factor = drift_factor(profile.reference)
    profile.blocks = {k: settle(e, factor) for k, e in profile.blocks.items()}
    profile.calibration = [settle(e, factor) for e in profile.calibration]


def _calibration_key(spec: ArchSpec, seq: int) -> str:
    return f"calibration|{json.dumps(spec.to_dict(), sort_keys=True)}|T{seq}"


@dataclass(frozen=True)
class _Unit:
    """One thing the profile times: a block of the grid or a whole calibration model."""

    key: str
    label: str
    measure: Callable[[Path], BlockTiming]
    spec: Optional[ArchSpec] = None  # calibration models
    seq_len: int = 0


def _units(config: ProfileConfig, executor: Executor) -> list[_Unit]:
    units = [
        _Unit(
            block_key(job[0], job[1], job[4], job[2], job[3]),
            block_key(job[0], job[1], job[4], job[2], job[3]),
            partial(_measure_block, job, config, executor),
        )
        for job in _grid(config)
    ]
    for spec in calibration_specs(config):
        for seq in config.seq_lens:
            units.append(
                _Unit(
                    _calibration_key(spec, seq),
                    f"calibration {spec.describe()} T{seq}",
                    partial(_measure_calibration, spec, seq, config, executor),
                    spec,
                    seq,
                )
            )
    return units


def _measure_calibration(
    spec: ArchSpec, seq: int, config: ProfileConfig, executor: Executor, workdir: Path
) -> BlockTiming:
    return measure_model(
        spec,
        executor,
        seq,
        threads=config.threads,
        warmup=config.warmup,
        reps=config.reps,
        seed=config.seed,
        precision=config.precision,
    )


def reference_job(config: ProfileConfig) -> tuple[str, int, int, int, int]:
    """The block timed throughout a run to follow the machine's drift: a mid-size layer at a mid length."""
    space = config.space

    def mid(values: tuple[int, ...]) -> int:
        return sorted(values)[len(values) // 2]

    return ("layer", mid(space.hidden_choices), mid(space.heads_choices), mid(space.ffn_choices), mid(config.seq_lens))


def time_reference_block(config: ProfileConfig, executor: Executor, workdir: Path) -> float:
    """One timing (median ms) of the profile's reference block: how fast the machine is right now."""
    return _measure_block(reference_job(config), config, executor, workdir).median_ms


class _Run:
    """The measuring state of one profile_device call: entries by key, the clock, the reference cadence."""

    def __init__(self, profile: DeviceProfile, config: ProfileConfig, executor: Executor, path: Path, workdir: Path):
        self.profile, self.config, self.executor, self.path, self.workdir = profile, config, executor, path, workdir
        self.calibration_index = {
            _calibration_key(ArchSpec.from_dict(c["spec"]), c["seq_len"]): i for i, c in enumerate(profile.calibration)
        }

    def entry(self, unit: _Unit) -> dict:
        if unit.spec is None:
            return self.profile.blocks.get(unit.key, {})
        index = self.calibration_index.get(unit.key)
        return self.profile.calibration[index] if index is not None else {}

    def sweeps(self, unit: _Unit) -> int:
        return len(self.entry(unit).get("sweeps", []))

    def _reference_due(self) -> bool:
        every, ref = self.config.reference_every, self.profile.reference
        return every > 0 and (not ref or self.profile.clock - ref[-1]["at"] >= every)

    def time_reference(self) -> None:
        self.profile.clock += 1
        ms = time_reference_block(self.config, self.executor, self.workdir)
        self.profile.reference.append({"at": self.profile.clock, "median_ms": ms})

    def measure(self, unit: _Unit) -> None:
        if self._reference_due():
            self.time_reference()
        timing = unit.measure(self.workdir)
        self.profile.clock += 1
        old = self.entry(unit)
        sweeps = old.get("sweeps", []) + [{**asdict(timing), "at": self.profile.clock}]
        entry = {"sweeps": sweeps, "median_ms": min(t["median_ms"] for t in sweeps)}  # raw until settled
        if unit.spec is None:
            self.profile.blocks[unit.key] = entry
        else:
            entry = {"spec": unit.spec.to_dict(), "seq_len": unit.seq_len, **entry}
            index = self.calibration_index.get(unit.key)
            if index is None:
                self.calibration_index[unit.key] = len(self.profile.calibration)
                self.profile.calibration.append(entry)
            else:
                self.profile.calibration[index] = entry
        self.profile.save(self.path)

    def close_reference(self) -> None:
        """A last reference timing after the last measurement, so every measurement lies between two."""
        ref = self.profile.reference
        if self.config.reference_every > 0 and (not ref or ref[-1]["at"] < self.profile.clock):
            self.time_reference()
            self.profile.save(self.path)


def _disagreeing(run: _Run, units: list[_Unit], limit: int) -> list[_Unit]:
    """Units whose two fastest corrected sweeps differ by more than agree_tol and that may be measured again."""
    factor = drift_factor(run.profile.reference)
    return [u for u in units if run.sweeps(u) < limit and settle(run.entry(u), factor)["spread"] > run.config.agree_tol]


@exclusive_per("path", "device profile", is_file=True)
def profile_device(
    config: ProfileConfig, executor: Executor, path: Path, progress: Optional[Progress] = None
) -> DeviceProfile:
    """Measure every block of the grid in `passes` shuffled sweeps with drift correction, re-measure blocks
    whose sweeps disagree, and settle each latency (resuming from `path` if it holds part of this profile).
    One process at a time per profile file."""
    profile = fresh = _new_profile(config, executor)
    if path.exists():
        profile = DeviceProfile.load(path, device=fresh.device)
        stored = {"precision": "fp32", **profile.config}  # profiles from before precisions were fp32
        if stored != fresh.config:
            if {**stored, "kernels": None} == {**fresh.config, "kernels": None}:
                raise ProfileError(
                    f"{path} was measured with other compiled kernels (another canao version): its timings must "
                    "not be mixed with today's. Remove it to profile again, or pass another --out."
                )
            raise ProfileError(f"{path} holds a profile with other settings; remove it or pass another --out.")
        profile.executor = profile.executor or fresh.executor
    units = _units(config, executor)
    total = len(units) * config.passes
    with tempfile.TemporaryDirectory() as tmp:
        run = _Run(profile, config, executor, path, Path(tmp))
        done = sum(min(run.sweeps(u), config.passes) for u in units)
        for sweep in range(config.passes):
            order = np.random.default_rng(config.seed + 1000 * (sweep + 1)).permutation(len(units))
            for unit in (units[i] for i in order):
                if run.sweeps(unit) > sweep:
                    continue
                run.measure(unit)
                done += 1
                if progress:
                    progress(unit.label, done, total)
        for extra in range(config.extra_sweeps):
            run.close_reference()
            again = _disagreeing(run, units, config.passes + extra + 1)
            for unit in again:
                run.measure(unit)
                if progress:
                    progress(f"again: {unit.label}", done, total)
        run.close_reference()
    settle_profile(profile)
    profile.save(path)
    return profile


def calibration_specs(config: ProfileConfig) -> list[ArchSpec]:
    """Seeded random members of the space, cycling through its hidden sizes and depths so each is calibrated."""
    rng = np.random.default_rng(config.seed + 1)
    space = config.space
    specs = []
    for i in range(config.calibration_models):
        spec = space.sample(rng)
        depth = space.layer_choices[i % len(space.layer_choices)]
        layers = tuple(spec.layers[j % spec.num_layers] for j in range(depth))
        specs.append(spec.replace(hidden=space.hidden_choices[i % len(space.hidden_choices)], layers=layers))
    return specs


def default_profile_path(config: ProfileConfig, executor: Optional[Executor] = None) -> Path:
    """Where `canao profile` writes and `canao latency` reads when no path is given: in the cache, keyed by
    device (default: this machine), precision and a digest of the settings."""
    import hashlib

    from canao.latency.device import make_executor

    executor = executor or make_executor("local")
    settings = json.dumps(_settings(config), sort_keys=True)
    digest = hashlib.sha256(settings.encode()).hexdigest()[:10]
    return cache_root() / "profiles" / f"{executor_fingerprint(executor)}-{config.precision}-{digest}.json"


def parse_seq_lens(text: str) -> tuple[int, ...]:
    """ "64,128,256" -> (64, 128, 256), with a clear error for anything else."""
    try:
        lens = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise SpecError(f"`seq_lens` must be comma-separated integers such as 64,128,256, but got {text!r}.") from None
    if not lens or min(lens) < 1 or max(lens) > LIMITS["seq_len"]:
        raise SpecError(f"`seq_lens` must hold integers in 1..{LIMITS['seq_len']}, but got {text!r}.")
    return lens


def expected_jobs(config: ProfileConfig) -> int:
    return (len(_grid(config)) + config.calibration_models * len(config.seq_lens)) * config.passes
