"""End-to-end CLI: compile a checkpoint, run it, benchmark it (tiny configs)."""

from __future__ import annotations

import shutil

from typer.testing import CliRunner

from canao.cli import app
from canao.compiler.passes.pipeline import PIPELINE
from canao.models import teacher_dir
from tests.hf_factories import hf_bert, hf_gpt2

runner = CliRunner()


def test_compile_run_bench_encoder(tmp_path):
    ckpt = tmp_path / "bert"
    hf_bert(
        "BertForQuestionAnswering", hidden=16, layers=1, heads=2, ffn=24, vocab=30522, positions=64
    ).save_pretrained(ckpt)
    shutil.copy(teacher_dir() / "tokenizer.json", ckpt / "tokenizer.json")
    result = runner.invoke(
        app,
        [
            "compile",
            "--model",
            str(ckpt),
            "--out",
            str(tmp_path / "art"),
            "--explain",
            "--dump",
            str(tmp_path / "dump"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "plan_memory" in result.output and (tmp_path / "dump" / "kernel.c").exists()
    assert len(list((tmp_path / "dump").glob("*.ir.txt"))) == 1 + len(PIPELINE)  # the lowered graph, then each pass
    result = runner.invoke(
        app,
        [
            "run",
            str(tmp_path / "art"),
            "--text",
            "who wrote it?",
            "--context",
            "The compiler was written by the canao team in 2026.",
        ],
    )
    assert result.exit_code == 0 and "'who wrote it?': '" in result.output and "(score " in result.output, result.output
    result = runner.invoke(app, ["bench", str(tmp_path / "art"), "--seq-len", "16", "--runs", "20"])
    assert result.exit_code == 0 and "canao" in result.output and "pytorch-eager" in result.output, result.output
    result = runner.invoke(app, ["bench", str(tmp_path / "art"), "--seq-len", "16", "--runs", "20", "--per-op"])
    assert result.exit_code == 0 and "per op" in result.output and "attention" in result.output, result.output
    assert "[bias+residual+layer_norm]" in result.output  # post-LN: the LayerNorm runs in the GEMM
    result = runner.invoke(app, ["bench", str(tmp_path / "art"), "--seq-len", "100000", "--runs", "20"])
    assert result.exit_code == 0 and "seq 64 (asked 100000" in result.output, result.output  # says what it measured
    result = runner.invoke(app, ["run", str(tmp_path / "art"), "--text", "x", "--threads", "100000"])
    assert result.exit_code == 2 and "threads" in result.output
    user_dir = tmp_path / "ud"
    user_dir.mkdir()
    (user_dir / "notes.txt").write_text("precious")
    result = runner.invoke(app, ["compile", "--model", str(ckpt), "--out", str(user_dir)])
    assert result.exit_code == 2 and "--force" in result.output and (user_dir / "notes.txt").read_text() == "precious"
    result = runner.invoke(app, ["compile", "--model", str(ckpt), "--out", str(tmp_path / "no" / "such" / "dir")])
    assert result.exit_code == 0, result.output  # parents are created
    result = runner.invoke(app, ["compile", "--model", str(ckpt), "--out", "/proc/nope/art"])
    assert result.exit_code == 2 and "/proc/nope" in result.output and "Traceback" not in result.output


def test_compile_and_generate_decoder(tmp_path):
    from tokenizers import ByteLevelBPETokenizer

    ckpt = tmp_path / "gpt"
    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(["to be or not to be, that is the question"] * 10, vocab_size=300, min_frequency=1)
    vocab = tok.get_vocab_size()
    hf_gpt2(hidden=16, layers=2, heads=2, vocab=vocab, positions=32).save_pretrained(ckpt)
    tok.save(str(ckpt / "tokenizer.json"))
    result = runner.invoke(app, ["compile", "--model", str(ckpt), "--out", str(tmp_path / "art")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["run", str(tmp_path / "art"), "--text", "to be", "--max-new-tokens", "5"])
    assert result.exit_code == 0 and result.output.startswith("to be"), result.output
    long_prompt = "to be or not to be " * 40  # far past the 32-token context
    result = runner.invoke(app, ["run", str(tmp_path / "art"), "--text", long_prompt, "--max-new-tokens", "5"])
    assert result.exit_code == 0 and "the prompt was cut" in result.output, result.output
    result = runner.invoke(
        app, ["run", str(tmp_path / "art"), "--text", "\udcff\udcfe\udc80"]
    )  # undecodable argv bytes
    assert result.exit_code == 2 and "valid UTF-8" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["bench", str(tmp_path / "art"), "--seq-len", "16", "--runs", "20"])
    assert result.exit_code == 0 and "KV cache" in result.output, result.output


def test_run_refuses_a_broken_artifact(tmp_path):
    result = runner.invoke(app, ["run", str(tmp_path / "missing"), "--text", "x"])
    assert result.exit_code == 2 and "not found" in result.output


def test_profile_and_latency_commands(tmp_path):
    import json

    from canao.arch import ArchSpec, LayerSpec, SearchSpace

    space = SearchSpace("encoder", 50, 32, (16,), (1, 2), (1, 2), 8, (16, 24))
    (tmp_path / "space.json").write_text(space.to_json())
    result = runner.invoke(
        app,
        [
            "profile",
            "--space",
            str(tmp_path / "space.json"),
            "--out",
            str(tmp_path / "p.json"),
            "--seq-lens",
            "8",
            "--reps",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "p.json").read_text())["blocks"]
    (tmp_path / "arch.json").write_text(ArchSpec("encoder", 50, 32, 16, (LayerSpec(2, 8, 24),) * 2).to_json())
    result = runner.invoke(
        app, ["latency", "--arch", str(tmp_path / "arch.json"), "--profile", str(tmp_path / "p.json"), "--seq-len", "8"]
    )
    assert result.exit_code == 0 and "predicted" in result.output and "measured" in result.output, result.output
    assert "another canao version" not in result.output
    stale = json.loads((tmp_path / "p.json").read_text())
    stale["config"]["kernels"] = "0" * 12  # timed with other kernels: predicted, with a note
    (tmp_path / "stale.json").write_text(json.dumps(stale))
    args = ["--arch", str(tmp_path / "arch.json"), "--profile", str(tmp_path / "stale.json"), "--seq-len", "8"]
    result = runner.invoke(app, ["latency", *args, "--no-measure"])
    assert result.exit_code == 0 and "predicted" in result.output, result.output
    assert "another canao version" in " ".join(result.output.split())
    result = runner.invoke(
        app, ["latency", "--arch", str(tmp_path / "arch.json"), "--profile", str(tmp_path / "x.json")]
    )
    assert result.exit_code == 2 and "no such profile" in result.output


def test_finetune_evaluate_distill_commands(tmp_path):
    import json

    from canao.arch import ArchSpec, LayerSpec

    ckpt = tmp_path / "bert"
    hf_bert("BertModel", hidden=16, layers=2, heads=2, ffn=24, vocab=30522, positions=64).save_pretrained(ckpt)
    shutil.copy(teacher_dir() / "tokenizer.json", ckpt / "tokenizer.json")
    result = runner.invoke(
        app,
        [
            "finetune",
            "--task",
            "sst2",
            "--model",
            str(ckpt),
            "--out",
            str(tmp_path / "ft"),
            "--max-steps",
            "3",
            "--batch-size",
            "8",
            "--max-length",
            "32",
        ],
    )
    assert result.exit_code == 0 and "accuracy" in result.output, result.output
    assert "fine-tuning sst2: 3/3 (100%)" in result.output  # progress lines when stdout is not a terminal
    from canao.data.bundled import SAMPLES_DIR

    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(tmp_path / "ft" / "model"),
            "--task",
            "sst2",
            "--data",
            str(SAMPLES_DIR / "sst2-dev.tsv"),
            "--predictions",
            str(tmp_path / "pred.json"),
        ],
    )
    assert result.exit_code == 0 and json.loads((tmp_path / "pred.json").read_text())[0]["id"]
    (tmp_path / "student.json").write_text(ArchSpec("encoder", 30522, 64, 8, (LayerSpec(1, 8, 16),)).to_json())
    result = runner.invoke(
        app,
        [
            "distill",
            "--task",
            "sst2",
            "--teacher",
            str(tmp_path / "ft" / "model"),
            "--arch",
            str(tmp_path / "student.json"),
            "--out",
            str(tmp_path / "st"),
            "--max-steps",
            "2",
            "--batch-size",
            "8",
            "--max-length",
            "32",
        ],
    )
    assert result.exit_code == 0 and "student in" in result.output, result.output
    args = ["distill", "--task", "sst2", "--teacher", str(tmp_path / "ft" / "model"), "--arch"]
    args += [str(tmp_path / "student.json"), "--out", str(tmp_path / "pruned"), "--init", "prune", "--max-steps", "1"]
    result = runner.invoke(app, args + ["--batch-size", "8", "--max-length", "32", "--prune-layers", "1"])
    assert result.exit_code == 0, result.output
    pruned = json.loads((tmp_path / "pruned" / "metrics.json").read_text())
    assert pruned["initialised"].startswith("pruned") and pruned["teacher_layers"] == [1]
    result = runner.invoke(app, args + ["--prune-layers", "one"])
    assert result.exit_code == 2 and "comma-separated layer indices" in result.output
    more = ["distill", "--task", "sst2", "--teacher", str(tmp_path / "ft" / "model"), "--arch"]
    more += [str(tmp_path / "student.json"), "--out", str(tmp_path / "more"), "--max-steps", "1"]
    more += ["--batch-size", "8", "--max-length", "32", "--start-from"]
    result = runner.invoke(app, more + [str(tmp_path / "st" / "model")])  # the finished student trains on
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "more" / "metrics.json").read_text())["initialised"] == f"from {tmp_path}/st/model"
    assert json.loads((tmp_path / "more" / "run_settings.json").read_text())["hidden_weight"] == 1.0  # every term
    more[more.index(str(tmp_path / "more"))] = str(tmp_path / "more-logits")
    result = runner.invoke(app, more + [str(tmp_path / "st" / "model"), "--prediction-only"])
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "more-logits" / "run_settings.json").read_text())
    assert (settings["hidden_weight"], settings["attention_weight"], settings["logit_weight"]) == (0.0, 0.0, 1.0)
    result = runner.invoke(
        app, more + [str(tmp_path / "st" / "model"), "--prediction-only", "--intermediate-epochs", "1"]
    )
    assert result.exit_code == 2 and "--prediction-only is one stage" in result.output, result.output
    result = runner.invoke(app, more + [str(tmp_path / "ft" / "model")])  # the teacher is not this student
    assert result.exit_code != 0 and "not the student" in result.output, result.output
    result = runner.invoke(
        app, ["evaluate", "--model", str(ckpt), "--task", "sst2", "--data", str(tmp_path / "nope.tsv")]
    )
    assert result.exit_code == 2 and "fine-tuned" in result.output
