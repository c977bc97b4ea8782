"""Fine-tuning and distillation on tiny configs: the loss goes down, resume is exact, mismatches are refused."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch

from canao.arch import ArchSpec, LayerSpec
from canao.data.bundled import SAMPLES_DIR
from canao.errors import CheckpointError, SpecError
from canao.models import load_pretrained, teacher_dir
from canao.models.prune import unit_importance
from canao.train.distill import (
    DistillationLoss,
    DistillConfig,
    _labelled_batches,
    distill,
    layer_map,
    pruned_student,
)
from canao.train.finetune import FinetuneConfig, finetune, load_for_task
from canao.train.tasks import get_task
from tests.hf_factories import hf_bert, hf_gpt2, save_tiny_bert_with_tokenizer
from tests.interrupt import Interrupted, interrupt_at

TRAIN, DEV = SAMPLES_DIR / "sst2-train-sample.tsv", SAMPLES_DIR / "sst2-dev.tsv"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return save_tiny_bert_with_tokenizer(tmp_path_factory.mktemp("tiny") / "bert")


def _config(out, **kw):
    base = dict(epochs=1, batch_size=16, lr=2e-3, max_length=48, max_steps=12, save_every=3, warmup_ratio=0.0)
    base.update(kw)
    return FinetuneConfig("sst2", out, **base)


def test_finetune_lowers_the_loss_and_saves_a_loadable_model(tmp_path, tiny_bert):
    result = finetune(_config(tmp_path / "run"), tiny_bert, TRAIN)
    first, last = result.history[0]["loss"], sum(h["loss"] for h in result.history[-3:]) / 3
    assert last < first
    loaded = load_pretrained(tmp_path / "run" / "model")
    assert loaded.task == "classification" and loaded.tokenizer is not None


def test_resume_reproduces_the_uninterrupted_run(tmp_path, tiny_bert):
    straight = finetune(_config(tmp_path / "a"), tiny_bert, TRAIN)

    crash = interrupt_at(7)

    with pytest.raises(Interrupted):
        finetune(_config(tmp_path / "b"), tiny_bert, TRAIN, progress=crash)
    resumed = finetune(_config(tmp_path / "b"), tiny_bert, TRAIN)
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in straight.history], rel=1e-5)
    a = load_pretrained(tmp_path / "a" / "model").model.state_dict()
    b = load_pretrained(tmp_path / "b" / "model").model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_changed_settings_do_not_resume(tmp_path, tiny_bert):
    finetune(_config(tmp_path / "c", max_steps=3), tiny_bert, TRAIN)
    with pytest.raises(SpecError, match="other settings"):
        finetune(_config(tmp_path / "c", max_steps=3, lr=1e-2), tiny_bert, TRAIN)


def test_bf16_autocast_follows_the_fp32_run_and_may_switch_on_resume(tmp_path, tiny_bert):
    fp32 = finetune(_config(tmp_path / "fp32", max_steps=6), tiny_bert, TRAIN)
    bf16 = finetune(_config(tmp_path / "bf16", max_steps=6, precision="bf16"), tiny_bert, TRAIN)
    # bf16 products carry ~3 significant digits: the loss curve stays close to fp32's, not equal to it
    assert [h["loss"] for h in bf16.history] == pytest.approx([h["loss"] for h in fp32.history], rel=0.05)
    assert [h["loss"] for h in bf16.history] != [h["loss"] for h in fp32.history]  # autocast really ran
    weights = load_pretrained(tmp_path / "bf16" / "model").model.state_dict()
    assert all(w.dtype == torch.float32 for w in weights.values())  # master weights stay fp32

    # precision is not part of a run's identity: a bf16 run resumes in fp32 (say on a CPU without bf16)
    with pytest.raises(Interrupted):  # after the checkpoint of step 3
        finetune(_config(tmp_path / "mixed", max_steps=6, precision="bf16"), tiny_bert, TRAIN, progress=interrupt_at(4))
    resumed = finetune(_config(tmp_path / "mixed", max_steps=6), tiny_bert, TRAIN)
    assert [h["loss"] for h in resumed.history][:3] == [h["loss"] for h in bf16.history][:3]
    assert resumed.history[-1]["loss"] == pytest.approx(fp32.history[-1]["loss"], rel=0.05)


def test_train_precision_auto_follows_the_cpu(monkeypatch):
    import canao.device as device
    from canao.train.finetune import train_precision

    def machine(*flags):
        level = device.simd_level_from_flags("x86_64", set(flags))
        return lambda: device.MachineInfo("x86_64", "test", 2, flags, level, "cc")

    avx512 = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq")
    monkeypatch.setattr(
        device, "describe_machine", machine(*avx512, "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")
    )
    assert train_precision("auto") == "bf16"
    monkeypatch.setattr(device, "describe_machine", machine(*avx512, "avx512_bf16", "avx512_vnni"))
    assert train_precision("auto") == "bf16"
    monkeypatch.setattr(device, "describe_machine", machine(*avx512))
    assert train_precision("auto") == "fp32"
    monkeypatch.setattr(device, "describe_machine", machine("avx2", "fma"))
    assert train_precision("auto") == "fp32"
    assert train_precision("bf16") == "bf16"
    with pytest.raises(SpecError, match="precision"):
        FinetuneConfig("sst2", "out", precision="fp16")


def test_distill_step_lowers_the_loss(tmp_path, tiny_bert):
    finetune(_config(tmp_path / "teacher", max_steps=6), tiny_bert, TRAIN)
    student = ArchSpec("encoder", 30522, 128, 24, (LayerSpec(2, 8, 40),))  # a slice of the teacher
    config = DistillConfig(_config(tmp_path / "student", max_steps=10))
    result = distill(config, tmp_path / "teacher" / "model", student, TRAIN, DEV)
    assert sum(h["loss"] for h in result.history[-3:]) / 3 < result.history[0]["loss"]
    assert "accuracy" in result.metrics
    assert load_pretrained(tmp_path / "student" / "model").spec == student


def test_two_stage_distillation_with_value_relations(tmp_path, tiny_bert):
    finetune(_config(tmp_path / "teacher", max_steps=4), tiny_bert, TRAIN)
    student = ArchSpec("encoder", 30522, 128, 24, (LayerSpec(2, 8, 40),))  # attention width 16 vs 32: R = 8
    config = DistillConfig(_config(tmp_path / "student", max_steps=6), value_weight=1.0, intermediate_epochs=1.0)
    result = distill(config, tmp_path / "teacher" / "model", student, TRAIN, DEV)
    first = json.loads((tmp_path / "student" / "intermediate" / "metrics.json").read_text())
    assert first["initialised"] == "sliced from the teacher" and not first["metrics"]  # no dev in stage 1
    second = json.loads((tmp_path / "student" / "metrics.json").read_text())
    assert second["initialised"].startswith("from ") and "accuracy" in result.metrics
    again = distill(config, tmp_path / "teacher" / "model", student, TRAIN, DEV)  # both stages done: resumes
    assert again.metrics == result.metrics


def test_pruned_student_starts_from_the_teachers_most_important_units(tmp_path, tiny_bert):
    finetune(_config(tmp_path / "teacher", max_steps=4), tiny_bert, TRAIN)
    student = ArchSpec("encoder", 30522, 128, 32, (LayerSpec(2, 8, 16),))
    config = DistillConfig(
        _config(tmp_path / "student", max_steps=4), intermediate_epochs=1.0, init="prune", prune_batches=2
    )
    distill(config, tmp_path / "teacher" / "model", student, TRAIN, DEV)
    first = json.loads((tmp_path / "student" / "intermediate" / "metrics.json").read_text())
    assert first["initialised"].startswith("pruned from the teacher") and first["teacher_layers"] == [1]

    # the uniform map's layer (the last of 2 for a 1-layer student) with its top heads by importance
    teacher = load_for_task(tmp_path / "teacher" / "model", "sst2").model.eval()
    task = get_task("sst2")
    train = task.load(TRAIN, load_for_task(tmp_path / "teacher" / "model", "sst2").tokenizer, max_length=48)
    model, origin, kept = pruned_student(config, teacher, student, train, num_labels=2)
    assert kept == [1] and origin == first["initialised"]
    scores = unit_importance(
        teacher, lambda m, b: task.loss(task.forward(m, b), b), _labelled_batches(task, train, 16, 2, 0)
    )
    best = sorted(sorted(range(4), key=lambda h: -float(scores.heads[1][h]))[:2])
    cols = [h * 8 + d for h in best for d in range(8)]
    torch.testing.assert_close(model.encoder.layers[0].attn.q.weight, teacher.encoder.layers[1].attn.q.weight[cols])
    units = sorted(sorted(range(64), key=lambda j: -float(scores.ffn[1][j]))[:16])
    torch.testing.assert_close(
        model.encoder.layers[0].ffn.down.weight, teacher.encoder.layers[1].ffn.down.weight[:, units]
    )
    assert DistillationLoss(config, student, teacher.encoder.spec, "sst2", teacher_layers=kept).map == [0, 2]
    given = replace(config, prune_layers=(0,))  # another layer, by request
    assert pruned_student(given, teacher, student, train, num_labels=2)[2] == [0]
    with pytest.raises(SpecError, match=r"must name 1 of the teacher's layers 0..1"):
        pruned_student(replace(config, prune_layers=(0, 1)), teacher, student, train, num_labels=2)
    with pytest.raises(SpecError, match=r"must name 1 of the teacher's layers 0..1"):
        pruned_student(replace(config, prune_layers=(2,)), teacher, student, train, num_labels=2)
    with pytest.raises(SpecError, match="distinct ascending"):
        DistillConfig(_config(tmp_path), init="prune", prune_layers=(1, 0))
    with pytest.raises(SpecError, match="init in"):
        DistillConfig(_config(tmp_path), init="random")
    wider = ArchSpec("encoder", 30522, 128, 32, (LayerSpec(2, 8, 16),) * 3)  # deeper than the teacher
    assert pruned_student(config, teacher, wider, train, num_labels=2)[1:] == ("random", None)


def test_distill_to_a_wider_non_slice_student(tmp_path, tiny_bert):
    finetune(_config(tmp_path / "teacher", max_steps=2), tiny_bert, TRAIN)
    student = ArchSpec("encoder", 30522, 128, 40, (LayerSpec(5, 8, 16),) * 3)  # wider and deeper: random init
    result = distill(
        DistillConfig(_config(tmp_path / "s2", max_steps=3)), tmp_path / "teacher" / "model", student, TRAIN
    )
    assert result.steps == 3


def test_layer_map():
    assert layer_map(4, 12) == [0, 3, 6, 9, 12]
    assert layer_map(3, 6) == [0, 2, 4, 6]


def test_task_teacher_mismatch_is_refused(tmp_path, tiny_bert):
    gpt = tmp_path / "gpt"
    hf_gpt2(hidden=16, layers=1, heads=2).save_pretrained(gpt)
    shutil.copy(teacher_dir() / "tokenizer.json", gpt / "tokenizer.json")
    with pytest.raises(SpecError, match="cannot serve task sst2"):
        finetune(_config(tmp_path / "x"), gpt, TRAIN)
    small_vocab = tmp_path / "small"
    hf_bert("BertModel", hidden=16, layers=1, heads=2, ffn=16, vocab=100).save_pretrained(small_vocab)
    shutil.copy(teacher_dir() / "tokenizer.json", small_vocab / "tokenizer.json")
    with pytest.raises(SpecError, match="vocab_size"):
        finetune(_config(tmp_path / "y"), small_vocab, TRAIN)
    with pytest.raises(SpecError, match="vocab_size"):
        distill(
            DistillConfig(_config(tmp_path / "z")),
            tiny_bert,
            ArchSpec("encoder", 100, 128, 16, (LayerSpec(2, 8, 16),)),
            TRAIN,
        )


def test_sigterm_checkpoints_and_the_same_command_resumes(tmp_path, tiny_bert):
    import os
    import signal

    from canao.train.finetune import TrainingStopped

    straight = finetune(_config(tmp_path / "a", save_every=100), tiny_bert, TRAIN)

    def terminate_at_step_5(step, total, loss):
        if step == 5:
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill` or a CI timeout would

    with pytest.raises(TrainingStopped, match="SIGTERM after step 5"):
        finetune(_config(tmp_path / "b", save_every=100), tiny_bert, TRAIN, progress=terminate_at_step_5)
    assert (
        torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["step"] == 5
    )  # not lost: saved on the signal
    resumed = finetune(_config(tmp_path / "b", save_every=100, save_every_s=60.0), tiny_bert, TRAIN)
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in straight.history], rel=1e-5)


def test_checkpoints_are_also_written_by_time(tmp_path, tiny_bert):
    seen = []

    def watch(step, total, loss):
        ckpt = tmp_path / "t" / "checkpoint.pt"
        seen.append(torch.load(ckpt, weights_only=False)["step"] if ckpt.exists() else 0)

    finetune(_config(tmp_path / "t", save_every=1000, save_every_s=1e-6, max_steps=4), tiny_bert, TRAIN, progress=watch)
    assert seen[1:] == [1, 2, 3]  # every step saved: the time limit, not the step count, triggered it


def test_empty_training_data_is_a_clear_error(tmp_path, tiny_bert):
    from canao.errors import DataError

    (tmp_path / "header.tsv").write_text("sentence\tlabel\n")
    with pytest.raises(DataError, match="no examples"):
        finetune(_config(tmp_path / "e"), tiny_bert, tmp_path / "header.tsv")
    (tmp_path / "bytes.tsv").write_bytes(bytes(range(256)))
    with pytest.raises(DataError, match="not UTF-8"):
        finetune(_config(tmp_path / "e2"), tiny_bert, tmp_path / "bytes.tsv")
    with pytest.raises(DataError, match="is a directory"):
        finetune(_config(tmp_path / "e3"), tiny_bert, tmp_path)


def test_cached_teacher_logits_train_exactly_like_the_live_teacher(tmp_path, tiny_bert, monkeypatch):
    monkeypatch.setenv("CANAO_CACHE_DIR", str(tmp_path / "cache"))
    finetune(_config(tmp_path / "teacher", max_steps=4), tiny_bert, TRAIN)
    student = ArchSpec("encoder", 30522, 128, 24, (LayerSpec(2, 8, 40),))
    runs = {}
    for cached in (False, True):
        config = DistillConfig(
            _config(tmp_path / f"s-{cached}", max_steps=5),
            hidden_weight=0.0,
            attention_weight=0.0,
            cache_teacher_outputs=cached,
        )
        runs[cached] = distill(config, tmp_path / "teacher" / "model", student, TRAIN)
    assert [h["loss"] for h in runs[True].history] == pytest.approx([h["loss"] for h in runs[False].history], rel=1e-4)
    files = list((tmp_path / "cache" / "teacher-outputs").glob("*.pt"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    config = DistillConfig(_config(tmp_path / "other", max_steps=2), hidden_weight=0.0, attention_weight=0.0)
    distill(config, tmp_path / "teacher" / "model", student.replace(hidden=16), TRAIN)  # another student: reused
    assert files[0].stat().st_mtime_ns == stamp


def test_span_qa_teacher_outputs_gather_the_live_logits():
    from canao.data.bundled import bundled_squad_sample
    from canao.models import build_model
    from canao.models.tokenizer import load_tokenizer
    from canao.train.tasks import get_task
    from canao.train.teacher_cache import PAD_LOGIT, TeacherOutputs

    task = get_task("squad")
    data = task.load(bundled_squad_sample(), load_tokenizer(teacher_dir()), max_length=64, doc_stride=32)
    model = build_model(ArchSpec("encoder", 30522, 128, 32, (LayerSpec(4, 8, 64),)), "qa").eval()
    outputs = TeacherOutputs.compute(model, "squad", data)
    index = torch.tensor([3, 0, len(data.features) - 1])
    batch = task.collate(data, index.numpy())
    with torch.no_grad():
        live = task.forward(model, batch)
    got = outputs.gather(index, batch["input_ids"].shape[1])
    valid = batch["attention_mask"] == 1
    for g, want in zip(got, live):
        assert torch.allclose(g[valid], want[valid], atol=1e-5)
        assert torch.all(g[~valid] == PAD_LOGIT)
    half = TeacherOutputs.compute(model, "squad", data, precision="bf16")  # what a bf16 live teacher sees
    assert half.values.dtype == torch.float32 and not torch.equal(half.values, outputs.values)
    assert torch.allclose(half.values, outputs.values, atol=0.05 * float(outputs.values.abs().max()))


def test_a_killed_teacher_pass_resumes_from_its_partial_save(tmp_path):
    """The cache pass saves the batches it has done; a killed pass resumes after them and ends with exactly
    the outputs of an uninterrupted one; a damaged partial file is ignored; the finished cache removes it."""
    from canao.data.bundled import bundled_squad_sample
    from canao.models import build_model
    from canao.models.tokenizer import load_tokenizer
    from canao.train.tasks import get_task
    from canao.train.teacher_cache import BATCH, TeacherOutputs

    task = get_task("squad")
    data = task.load(bundled_squad_sample(), load_tokenizer(teacher_dir()), max_length=64, doc_stride=32)
    total = (len(data.features) + BATCH - 1) // BATCH
    assert total > 3
    model = build_model(ArchSpec("encoder", 30522, 128, 32, (LayerSpec(4, 8, 64),)), "qa").eval()
    whole = TeacherOutputs.compute(model, "squad", data)
    partial = tmp_path / "pass.partial.pt"

    def killed_after_two(done, total, loss):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        TeacherOutputs.compute(model, "squad", data, killed_after_two, partial=partial, save_every_s=0.0)
    assert partial.exists()
    seen: list[int] = []
    resumed = TeacherOutputs.compute(
        model, "squad", data, lambda done, total, loss: seen.append(done), partial=partial, save_every_s=0.0
    )
    assert seen[0] == 3 and seen[-1] == total  # batches 1-2 came from the file
    assert torch.equal(resumed.values, whole.values) and torch.equal(resumed.offsets, whole.offsets)
    partial.write_bytes(b"not a torch file")
    seen.clear()
    again = TeacherOutputs.compute(
        model, "squad", data, lambda done, total, loss: seen.append(done), partial=partial, save_every_s=0.0
    )
    assert seen[0] == 1 and torch.equal(again.values, whole.values)
    cache = tmp_path / "cache"
    TeacherOutputs.load_or_compute(model, "squad", data, teacher_dir(), cache_dir=cache, save_every_s=0.0)
    assert [p.name.endswith(".partial.pt") for p in cache.iterdir()] == [False]


def test_distillation_with_augmented_text(tmp_path, tiny_bert, caplog):
    finetune(_config(tmp_path / "teacher", max_steps=2), tiny_bert, TRAIN)
    student = ArchSpec("encoder", 30522, 128, 24, (LayerSpec(2, 8, 40),))
    config = DistillConfig(_config(tmp_path / "aug", max_steps=3), augment_copies=2)
    with caplog.at_level("INFO", logger="canao.train.distill"):
        result = distill(config, tmp_path / "teacher" / "model", student, TRAIN)
    assert result.steps == 3
    assert any("augmented 2000 training examples with" in r.message for r in caplog.records)
    with pytest.raises(SpecError, match="augmentation covers"):
        distill(
            DistillConfig(FinetuneConfig("squad", tmp_path / "q", max_steps=1, max_length=256), augment_copies=1),
            tmp_path / "teacher" / "model",
            student,
            SAMPLES_DIR / "squad-v1.1-dev-sample.json",
        )


def test_a_finished_student_goes_on_training_from_its_own_weights(tmp_path, tiny_bert):
    finetune(_config(tmp_path / "teacher", max_steps=2), tiny_bert, TRAIN)
    teacher = tmp_path / "teacher" / "model"
    student = ArchSpec("encoder", 30522, 128, 24, (LayerSpec(2, 8, 40),))
    first = DistillConfig(_config(tmp_path / "first", max_steps=4))
    distill(first, teacher, student, TRAIN)
    finished = load_pretrained(tmp_path / "first" / "model").model

    # a learning rate too small to move the weights: the continued run must start from the finished student
    more = DistillConfig(_config(tmp_path / "more", max_steps=1, lr=1e-12))
    distill(more, teacher, student, TRAIN, start_from=tmp_path / "first" / "model")
    continued = load_pretrained(tmp_path / "more" / "model").model
    for (name, want), got in zip(finished.state_dict().items(), continued.state_dict().values()):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0, msg=name)
    summary = json.loads((tmp_path / "more" / "metrics.json").read_text())
    assert summary["initialised"] == f"from {tmp_path / 'first' / 'model'}"
    again = distill(more, teacher, student, TRAIN, start_from=tmp_path / "first" / "model")  # the same start: resumes
    assert again.steps == 1
    with pytest.raises(SpecError, match="started from .*first/model, not from the teacher"):
        distill(more, teacher, student, TRAIN)  # its saved settings match, where its student came from does not
    with pytest.raises(SpecError, match="started from the teacher, not from .*more/model"):
        distill(first, teacher, student, TRAIN, start_from=tmp_path / "more" / "model")  # and the other way round

    other = ArchSpec("encoder", 30522, 128, 24, (LayerSpec(1, 8, 40),))
    with pytest.raises(SpecError, match="not the student"):
        distill(more, teacher, other, TRAIN, start_from=tmp_path / "first" / "model")
    with pytest.raises(SpecError, match="not both"):
        distill(more, teacher, student, TRAIN, slice_from=teacher, start_from=tmp_path / "first" / "model")


def test_a_distillation_is_not_resumed_under_other_distillation_settings(tmp_path, tiny_bert, caplog):
    """The temperature and loss weights are not in the training config a resume checks: they are saved beside
    it (run_settings.json), and a resume under others is refused, naming them; a run saved before that file
    existed resumes as before."""
    finetune(_config(tmp_path / "teacher", max_steps=2), tiny_bert, TRAIN)
    teacher = tmp_path / "teacher" / "model"
    student = ArchSpec("encoder", 30522, 128, 24, (LayerSpec(2, 8, 40),))
    config = DistillConfig(_config(tmp_path / "run", max_steps=4, save_every=1))

    crash = interrupt_at(2)

    with pytest.raises(Interrupted):
        distill(config, teacher, student, TRAIN, progress=crash)
    saved = json.loads((tmp_path / "run" / "run_settings.json").read_text())
    assert saved["temperature"] == 2.0 and saved["init"] == "slice" and "train" not in saved
    with pytest.raises(SpecError, match=r"temperature 2\.0 -> 4\.0, value_weight 0\.0 -> 0\.5"):
        distill(replace(config, temperature=4.0, value_weight=0.5), teacher, student, TRAIN)
    assert distill(replace(config, cache_teacher_outputs=False), teacher, student, TRAIN).steps == 4

    (tmp_path / "run" / "checkpoint.pt").rename(tmp_path / "kept.pt")
    shutil.rmtree(tmp_path / "run" / "model")
    with pytest.raises(Interrupted):
        distill(config, teacher, student, TRAIN, progress=crash)
    (tmp_path / "run" / "run_settings.json").unlink()  # as a run saved before settings were
    with caplog.at_level("WARNING"):
        assert distill(replace(config, temperature=4.0), teacher, student, TRAIN).steps == 4
    assert "predates saved run settings" in caplog.text
    settings_file = tmp_path / "run" / "run_settings.json"
    saved = json.loads(settings_file.read_text())
    assert saved["temperature"] == 4.0
    del saved["relation_heads"]  # as a run saved before that setting existed
    settings_file.write_text(json.dumps(saved))
    assert distill(replace(config, temperature=4.0), teacher, student, TRAIN).steps == 4


class _ShellPayload:
    """What a crafted checkpoint holds: unpickling it runs a shell command."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_checkpoint_runs_no_code_on_resume(tmp_path, tiny_bert):
    out, marker = tmp_path / "run", tmp_path / "payload-ran"
    with pytest.raises(Interrupted):
        finetune(_config(out), tiny_bert, TRAIN, progress=interrupt_at(4))
    state = torch.load(out / "checkpoint.pt", weights_only=True)  # what canao saves reads back without pickled code
    state["history"] = _ShellPayload(marker)
    torch.save(state, out / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="cannot be read as a canao training checkpoint.*Delete it"):
        finetune(_config(out), tiny_bert, TRAIN)
    assert not marker.exists()
    torch.load(out / "checkpoint.pt", weights_only=False)  # the old way: the payload runs (the test can fail)
    assert marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "not_a_dict", "wrong_state"])
def test_a_damaged_checkpoint_is_one_line_naming_it(tmp_path, tiny_bert, damage):
    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        finetune(_config(out), tiny_bert, TRAIN, progress=interrupt_at(4))
    ckpt = out / "checkpoint.pt"
    if damage == "truncate":
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
    elif damage == "garbage":
        ckpt.write_bytes(b"\x00" * 64)
    elif damage == "not_a_dict":
        torch.save([1, 2, 3], ckpt)
    else:
        state = torch.load(ckpt, weights_only=True)
        state["modules"] = {"model": {"nonsense": torch.zeros(1)}}
        torch.save(state, ckpt)
    with pytest.raises(CheckpointError) as info:
        finetune(_config(out), tiny_bert, TRAIN)
    message = str(info.value)
    assert str(ckpt) in message and "start the run over" in message and "\n" not in message


def test_a_diverging_run_stops_and_says_so(tmp_path, tiny_bert):
    from canao.train.finetune import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="diverged .is the learning rate 1e\\+30 too high"):
        finetune(_config(tmp_path / "run", lr=1e30), tiny_bert, TRAIN)
    assert not (tmp_path / "run" / "model").exists()  # no NaN model is saved as if it were trained
