"""Search benchmark: do REINFORCE and evolution beat random search, and what does compiler-awareness buy over FLOPs?

On SST-2 with the default space (fp32, 128 tokens), budget = 1/4 of the
compiled teacher's measured latency on this CPU:

  supernet   train the supernet once from the SST-2 teacher (reused from --work/supernet when present)
  search     for each controller x seed: the best inherited dev accuracy under the budget after the same
             number of evaluations (mean and spread over seeds); the pick compiled and measured here
  flops      the same search with the FLOPs proxy (same budget as a fraction of the teacher's FLOPs): its
             pick's measured latency and accuracy
  kendall    how well inherited weights rank members: >= 6 members spread over the latency range the supernet
             was trained for (up to --supernet-focus x the budget), Kendall tau between inherited dev accuracy
             and accuracy after a short stand-alone distillation

Needs the SST-2 teacher (`canao finetune --task sst2 --train <SST-2 train.tsv> --out T`, then --teacher
T/model) and a profile of the default space on this machine (`canao profile --out P.json`). Every stage
appends JSON lines to --results and is resumable (runs and trial stores live under --work).

    .venv/bin/python benchmarks/search.py --teacher T/model --profile P.json --work /work/runs/search \\
        --results docs/search.jsonl [--stages supernet,search,flops,kendall] [--evaluations 200]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from canao.search.candidates import Candidate, CandidateSpace
from canao.search.loop import SearchConfig, run_search
from canao.search.ranking import kendall_tau
from canao.search.space import default_encoder_space

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CONTROLLERS = ("rl", "evolution", "random")


def _record(results: Path, entry: dict) -> None:
    results.parent.mkdir(parents=True, exist_ok=True)
    with results.open("a") as f:
        f.write(json.dumps(entry) + "\n")
    print(json.dumps(entry, indent=2), flush=True)


def _log(step: int, total: int, value: float | None) -> None:
    if step % 50 == 0 or step == total:
        print(f"  {step}/{total} ({value})", flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        from canao.latency.device import make_executor
        from canao.latency.predictor import LatencyPredictor
        from canao.latency.profile import DeviceProfile, measure_model

        self.args, self.space = args, CandidateSpace(default_encoder_space())
        self.predictor = LatencyPredictor(DeviceProfile.load(args.profile))
        self.executor, self.measure_model = make_executor("local"), measure_model
        # The budget is fixed once per work directory (measured idle), so later stages and resumed runs share it.
        budget_file = args.work / "teacher_ms.json"
        if budget_file.exists():
            self.teacher_ms = float(json.loads(budget_file.read_text())["teacher_ms"])
        else:
            self.teacher_ms = self.measure(Candidate(self.space.arch.largest()))
            args.work.mkdir(parents=True, exist_ok=True)
            budget_file.write_text(json.dumps({"teacher_ms": self.teacher_ms}))
        self.budget = self.teacher_ms * args.budget_fraction
        self.cache: dict[str, float] = {}

    def latency(self, candidate: Candidate) -> float:
        return self.predictor.predict_ms(candidate.spec, candidate.seq_len)

    def measure(self, candidate: Candidate) -> float:
        return self.measure_model(candidate.spec, self.executor, candidate.seq_len, reps=30).median_ms

    def supernet(self) -> float:
        from canao.search.run import SUPERNET_LENGTH_BUCKETS
        from canao.search.supernet import SupernetConfig, train_supernet
        from canao.train.finetune import FinetuneConfig

        start = time.perf_counter()
        if not (self.args.work / "supernet" / "model" / "config.json").exists():
            config = FinetuneConfig(
                "sst2",
                self.args.work / "supernet",
                epochs=self.args.supernet_epochs,
                batch_size=32,
                lr=self.args.supernet_lr,
                max_length=128,
                length_buckets=SUPERNET_LENGTH_BUCKETS,
            )
            focus = self.args.supernet_focus * self.budget if self.args.supernet_focus > 0 else None
            train_supernet(
                SupernetConfig(config, focus_ms=focus),
                self.space,
                self.args.teacher,
                SHARED / "glue/SST-2/train.tsv",
                progress=lambda s, t, loss: _log(s, t, loss),
                latency=lambda spec: self.latency(Candidate(spec)),
            )
        return time.perf_counter() - start

    def evaluator(self):
        from canao.search.workers import MemberScorer

        scorer = MemberScorer(
            str(self.args.work / "supernet"),
            "sst2",
            str(SHARED / "glue/SST-2/dev.tsv"),
            128,
            self.args.held_out,
            threads=2,
        )

        def evaluate(batch):
            out = []
            for c in batch:
                key = c.spec.to_json()
                if key not in self.cache:
                    self.cache[key] = scorer.score(c.to_dict())
                out.append(self.cache[key])
            return out

        return evaluate

    def search(self, controller: str, seed: int, cost: str = "latency") -> dict:
        from canao.search.run import flops_budget

        flops = flops_budget(self.space, self.latency, self.budget) if cost == "flops" else None
        config = SearchConfig(
            self.budget, controller, self.args.evaluations, seed, cost=cost, flops_budget_gflops=flops
        )
        start = time.perf_counter()
        fraction = "" if self.args.budget_fraction == 0.25 else f"-budget{self.args.budget_fraction:g}"
        store = self.args.work / f"trials-{controller}-{cost}-{seed}{fraction}.sqlite"
        result = run_search(config, self.space, self.evaluator(), self.latency, store, progress=_log)
        best = result.best
        if cost == "flops":  # the proxy's pick: the most accurate member under the FLOPs budget
            feasible = [t for t in result.trials if t.cost <= (flops or 0)]
            best = max(feasible, key=lambda t: t.accuracy) if feasible else None
        entry = {
            "controller": controller,
            "seed": seed,
            "cost": cost,
            "evaluations": len(result.trials),
            "wall_s": time.perf_counter() - start,
            "budget_ms": self.budget,
            "budget_fraction": self.args.budget_fraction,
        }
        if best is not None:
            pick = Candidate.from_dict(best.candidate)
            entry.update(accuracy=best.accuracy, predicted_ms=best.latency_ms, arch=pick.describe())
            if self.args.measure:  # the pick compiled and timed here: run on a quiet machine
                measured = self.measure(pick)
                entry.update(measured_ms=measured, measured_over_budget=measured / self.budget)
        return entry

    def kendall(self) -> dict:
        from canao.search.run import SUPERNET_LENGTH_BUCKETS
        from canao.search.supernet import inherited_accuracy, load_held_out, load_supernet
        from canao.train.distill import DistillConfig, distill
        from canao.train.finetune import FinetuneConfig

        rng = np.random.default_rng(0)
        cap = self.args.supernet_focus * self.budget if self.args.supernet_focus > 0 else float("inf")
        drawn = (self.space.decode(self.space.random_decisions(rng)) for _ in range(2000))
        members = sorted([c for c in drawn if self.latency(c) <= cap][:200], key=self.latency)
        picks = [members[int(q)] for q in np.linspace(0, len(members) - 1, self.args.kendall_members)]
        supernet = load_supernet(self.args.work / "supernet")
        dev = load_held_out(supernet, "sst2", SHARED / "glue/SST-2/dev.tsv", 128, None)
        inherited, distilled = [], []
        for i, c in enumerate(picks):
            inherited.append(inherited_accuracy(supernet.model, "sst2", c.spec, dev))
            config = DistillConfig(
                FinetuneConfig(
                    "sst2",
                    self.args.work / f"kendall-{i}",
                    epochs=1,
                    batch_size=32,
                    lr=1e-4,
                    max_length=128,
                    max_steps=self.args.distill_steps,
                    length_buckets=SUPERNET_LENGTH_BUCKETS,
                )
            )
            result = distill(
                config, self.args.teacher, c.spec, SHARED / "glue/SST-2/train.tsv", SHARED / "glue/SST-2/dev.tsv"
            )
            distilled.append(float(result.metrics["accuracy"]))
        return {
            "max_predicted_ms": cap,
            "members": [c.describe() for c in picks],
            "predicted_ms": [self.latency(c) for c in picks],
            "inherited_accuracy": inherited,
            "distilled_accuracy": distilled,
            "distill_steps": self.args.distill_steps,
            "kendall_tau": kendall_tau(inherited, distilled),
        }


def report(results: Path) -> str:
    """Markdown tables of the latest entry of each stage in `results` (the ones with measurements preferred)."""
    entries = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    latest: dict[str, dict] = {}
    for e in entries:
        key = e["stage"] + (f":{e['controller']}" if "controller" in e else "")
        measured = all("measured_ms" in r for r in e.get("runs", []))
        if key not in latest or measured or not all("measured_ms" in r for r in latest[key].get("runs", [])):
            latest[key] = e
    out = []
    searches = [e for k, e in latest.items() if k.startswith("search:")]
    if searches:
        budget = searches[0]["runs"][0]["budget_ms"]
        out += [
            f"Budget {budget:.2f} ms (1/4 of the compiled teacher), {searches[0]['runs'][0]['evaluations']} "
            "evaluations per run, inherited accuracy on SST-2 dev.",
            "",
            "| controller | best accuracy mean +- std (3 seeds) | picks: predicted ms | measured ms | "
            "measured / budget | wall s per run |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for e in searches:
            runs = e["runs"]

            def col(name: str, fmt: str, runs: list = runs) -> str:
                return " / ".join(fmt.format(r[name]) if name in r else "-" for r in runs)

            out.append(
                f"| {e['controller']} | {e['best_accuracy_mean']:.2f} +- {e['best_accuracy_std']:.2f} | "
                f"{col('predicted_ms', '{:.2f}')} | {col('measured_ms', '{:.2f}')} | "
                f"{col('measured_over_budget', '{:.2f}')} | {col('wall_s', '{:.0f}')} |"
            )
        out.append("")
        for e in searches:
            for r in e["runs"]:
                out.append(
                    f"- {e['controller']} seed {r['seed']}: {r.get('arch', 'no pick')} ({r.get('accuracy', 0):.2f}%)"
                )
        out.append("")
    if "flops proxy" in latest:
        (r,) = latest["flops proxy"]["runs"]
        out += [
            f"FLOPs proxy (rl, seed 0, budget as the same fraction of the teacher's FLOPs): pick {r.get('arch')}, "
            f"accuracy {r.get('accuracy', 0):.2f}%, predicted {r.get('predicted_ms', 0):.2f} ms, measured "
            f"{r.get('measured_ms', float('nan')):.2f} ms = "
            f"{r.get('measured_over_budget', float('nan')):.2f}x the budget.",
            "",
        ]
    if "kendall" in latest:
        k = latest["kendall"]
        out += [
            f"Kendall tau (inherited vs {k['distill_steps']}-step stand-alone distillation, "
            f"{len(k['members'])} members): **{k['kendall_tau']:.3f}**",
            "",
            "| member | predicted ms | inherited acc | distilled acc |",
            "|---|---:|---:|---:|",
        ]
        for m, ms, a, d in zip(k["members"], k["predicted_ms"], k["inherited_accuracy"], k["distilled_accuracy"]):
            out.append(f"| {m} | {ms:.2f} | {a:.2f} | {d:.2f} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, help="the SST-2 fine-tuned teacher (HF layout)")
    parser.add_argument("--profile", type=Path, help="fp32 profile of the default space, this CPU")
    parser.add_argument("--work", type=Path, help="runs and trial stores (resumed)")
    parser.add_argument("--results", type=Path, default=Path("docs/search.jsonl"))
    parser.add_argument("--stages", default="supernet,search,flops,kendall")
    parser.add_argument("--evaluations", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--controllers", default=",".join(CONTROLLERS), help="comma-separated subset to run")
    parser.add_argument(
        "--held-out", type=int, default=None, help="score members on the first N dev sentences (default: all 872)"
    )
    parser.add_argument(
        "--budget-fraction",
        type=float,
        default=0.25,
        help="budget as a fraction of the compiled teacher's latency (the supernet's focus follows the first run)",
    )
    parser.add_argument("--supernet-epochs", type=float, default=1.0)
    parser.add_argument("--supernet-lr", type=float, default=2e-4)
    parser.add_argument(
        "--supernet-focus", type=float, default=1.5, help="random members within this multiple of the budget (0: all)"
    )
    parser.add_argument("--kendall-members", type=int, default=6)
    parser.add_argument("--distill-steps", type=int, default=600)
    parser.add_argument(
        "--no-measure",
        dest="measure",
        action="store_false",
        help="skip compiling and timing the picks (search while other work runs; rerun later to measure: the "
        "trial stores replay, so the picks are the same)",
    )
    parser.add_argument("--report", action="store_true", help="print markdown tables of --results and stop")
    args = parser.parse_args()
    if args.report:
        print(report(args.results))
        return
    if not (args.teacher and args.profile and args.work):
        parser.error("--teacher, --profile and --work are needed (all but --report)")
    stages = args.stages.split(",")
    bench = Bench(args)
    print(f"teacher measured {bench.teacher_ms:.2f} ms; budget {bench.budget:.2f} ms", flush=True)
    if "supernet" in stages:
        _record(args.results, {"stage": "supernet", "wall_s": bench.supernet()})
    if "search" in stages:
        for controller in args.controllers.split(","):
            runs = [bench.search(controller, seed) for seed in range(args.seeds)]
            accuracies = [r.get("accuracy", float("nan")) for r in runs]
            _record(
                args.results,
                {
                    "stage": "search",
                    "controller": controller,
                    "runs": runs,
                    "best_accuracy_mean": float(np.mean(accuracies)),
                    "best_accuracy_std": float(np.std(accuracies)),
                },
            )
    if "flops" in stages:
        _record(args.results, {"stage": "flops proxy", "runs": [bench.search("rl", 0, "flops")]})
    if "kendall" in stages:
        _record(args.results, {"stage": "kendall", **bench.kendall()})


if __name__ == "__main__":
    main()
