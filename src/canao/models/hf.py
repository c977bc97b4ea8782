"""Hugging Face checkpoint interop: read and write config.json + weights + tokenizer.

Reads BERT (BertModel / BertForSequenceClassification / BertForQuestionAnswering)
and GPT-2 (GPT2Model / GPT2LMHeadModel) checkpoints from a local directory,
from model.safetensors (single or sharded with an index) or pytorch_model.bin
(loaded with `weights_only=True`, so no pickled code runs). Writes the same
layout, which `transformers` loads back. Heterogeneous specs, which HF
configs cannot express, are stored as an extra `canao_arch` entry of
config.json; canao reads it first.

GPT-2 stores its projections as Conv1D (weight = in x out) with Q, K and V
merged in `c_attn`; canao's layout is nn.Linear (out x in) with Q, K, V
separate, so import transposes and splits and export does the reverse.

Example::

    loaded = load_pretrained("path/to/bert-checkpoint")
    loaded.model, loaded.spec, loaded.task, loaded.tokenizer
    save_pretrained(loaded.model, "out/dir", tokenizer=loaded.tokenizer)
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from canao.arch import ArchSpec
from canao.errors import CheckpointError, SpecError
from canao.models.elastic import roles_of
from canao.models.heads import backbone_of, build_model, task_of
from canao.models.tokenizer import TOKENIZER_FILES, load_tokenizer, save_tokenizer
from canao.storage import replace_directory, share_file, temp_directory

log = logging.getLogger(__name__)

_ACTIVATION_FROM_HF = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
}
_BERT_ARCH_TASK = {
    "BertModel": "backbone",
    "BertForSequenceClassification": "classification",
    "BertForQuestionAnswering": "qa",
}
_GPT2_ARCH_TASK = {"GPT2Model": "lm", "GPT2LMHeadModel": "lm"}
# Checkpoint entries that hold no learned weight canao uses: buffers of older
# transformers versions and pre-training heads.
_IGNORED_PREFIXES = ("cls.", "embeddings.position_ids")


@dataclass
class Pretrained:
    """A loaded checkpoint: the reference model, its spec, task and tokenizer (if any)."""

    model: nn.Module
    spec: ArchSpec
    task: str
    tokenizer: Any
    directory: Path
    labels: Optional[dict[int, str]] = None


# ------------------------------------------------------------------ config
def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise CheckpointError(f"{path}: file not found; a checkpoint directory needs config.json and weights.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({type(err).__name__}: {err}).") from None
    except OSError as err:  # a directory, unreadable
        raise CheckpointError(f"{path}: cannot be read ({err.strerror or err}).") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}.")
    return data


def _field(config: dict[str, Any], name: str, path: Path, default: Any = KeyError) -> Any:
    if name in config and config[name] is not None:
        return config[name]
    if default is KeyError:
        raise CheckpointError(f"{path}: field `{name}` is missing.")
    return default


def _activation(config: dict[str, Any], name: str, default: str, path: Path) -> str:
    value = _field(config, name, path, default)
    if value not in _ACTIVATION_FROM_HF:
        raise CheckpointError(
            f"{path}: field `{name}`={value!r} is not supported; canao knows {sorted(_ACTIVATION_FROM_HF)}."
        )
    return _ACTIVATION_FROM_HF[value]


def spec_from_config(config: dict[str, Any], path: Path) -> tuple[ArchSpec, str]:
    """ArchSpec and task implied by an HF config.json (or its `canao_arch` entry)."""
    model_type = config.get("model_type")
    if model_type not in ("bert", "gpt2"):
        raise CheckpointError(
            f"{path}: field `model_type`={model_type!r} is not supported; canao reads 'bert' and 'gpt2'."
        )
    architectures = config.get("architectures") or (["BertModel"] if model_type == "bert" else ["GPT2LMHeadModel"])
    known = _BERT_ARCH_TASK if model_type == "bert" else _GPT2_ARCH_TASK
    task = known.get(architectures[0])
    if task is None:
        log.warning(
            "%s: architecture %s has a head canao does not use; loading the backbone only.", path, architectures[0]
        )
        task = "backbone" if model_type == "bert" else "lm"
    try:
        if "canao_arch" in config:
            spec = ArchSpec.from_dict(config["canao_arch"])
        elif model_type == "bert":
            spec = _bert_spec(config, path)
        else:
            spec = _gpt2_spec(config, path)
    except SpecError as err:
        raise CheckpointError(f"{path}: {err}") from err
    if spec.kind != ("encoder" if model_type == "bert" else "decoder"):
        raise CheckpointError(f"{path}: field `canao_arch.kind`={spec.kind!r} contradicts `model_type`={model_type!r}.")
    return spec, task


def _bert_spec(config: dict[str, Any], path: Path) -> ArchSpec:
    if _field(config, "position_embedding_type", path, "absolute") != "absolute":
        raise CheckpointError(f"{path}: field `position_embedding_type` must be 'absolute' for canao.")
    hidden, heads = int(_field(config, "hidden_size", path)), int(_field(config, "num_attention_heads", path))
    if hidden % heads:
        raise CheckpointError(
            f"{path}: field `hidden_size`={hidden} is not divisible by `num_attention_heads`={heads}."
        )
    return ArchSpec.uniform(
        "encoder",
        vocab_size=int(_field(config, "vocab_size", path)),
        max_positions=int(_field(config, "max_position_embeddings", path)),
        hidden=hidden,
        num_layers=int(_field(config, "num_hidden_layers", path)),
        heads=heads,
        ffn=int(_field(config, "intermediate_size", path)),
        type_vocab_size=int(_field(config, "type_vocab_size", path, 2)),
        norm_eps=float(_field(config, "layer_norm_eps", path, 1e-12)),
        activation=_activation(config, "hidden_act", "gelu", path),
    )


def _gpt2_spec(config: dict[str, Any], path: Path) -> ArchSpec:
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if config.get(flag):
            raise CheckpointError(f"{path}: field `{flag}`=true is not supported by canao.")
    if config.get("scale_attn_weights") is False:
        raise CheckpointError(f"{path}: field `scale_attn_weights`=false is not supported by canao.")
    hidden, heads = int(_field(config, "n_embd", path)), int(_field(config, "n_head", path))
    if hidden % heads:
        raise CheckpointError(f"{path}: field `n_embd`={hidden} is not divisible by `n_head`={heads}.")
    return ArchSpec.uniform(
        "decoder",
        vocab_size=int(_field(config, "vocab_size", path)),
        max_positions=int(_field(config, "n_positions", path)),
        hidden=hidden,
        num_layers=int(_field(config, "n_layer", path)),
        heads=heads,
        ffn=int(_field(config, "n_inner", path, 4 * hidden)),
        norm_eps=float(_field(config, "layer_norm_epsilon", path, 1e-5)),
        activation=_activation(config, "activation_function", "gelu_new", path),
    )


def config_from_spec(spec: ArchSpec, task: str, labels: Optional[dict[int, str]] = None) -> dict[str, Any]:
    """An HF config.json for `spec` (with `canao_arch` so that heterogeneous specs survive)."""
    first = spec.layers[0]
    if spec.kind == "encoder":
        arch = {v: k for k, v in _BERT_ARCH_TASK.items()}[task]
        config = {
            "architectures": [arch],
            "model_type": "bert",
            "vocab_size": spec.vocab_size,
            "hidden_size": spec.hidden,
            "num_hidden_layers": spec.num_layers,
            "num_attention_heads": first.heads,
            "intermediate_size": first.ffn,
            "hidden_act": "gelu" if spec.activation == "gelu" else "gelu_new",
            "max_position_embeddings": spec.max_positions,
            "type_vocab_size": spec.type_vocab_size,
            "layer_norm_eps": spec.norm_eps,
            "position_embedding_type": "absolute",
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "pad_token_id": 0,
        }
    else:
        config = {
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "vocab_size": spec.vocab_size,
            "n_positions": spec.max_positions,
            "n_embd": spec.hidden,
            "n_layer": spec.num_layers,
            "n_head": first.heads,
            "n_inner": first.ffn,
            "activation_function": "gelu_new" if spec.activation == "gelu_tanh" else "gelu",
            "layer_norm_epsilon": spec.norm_eps,
            "tie_word_embeddings": True,
        }
    if labels:
        config["id2label"] = {str(k): v for k, v in labels.items()}
        config["label2id"] = {v: k for k, v in labels.items()}
    config["canao_arch"] = spec.to_dict()
    return config


# ----------------------------------------------------------- key mapping
# Each name map is stated once and read both ways (loading: HF -> canao; saving: canao -> HF).
_BERT_FIXED = {
    "embeddings.word_embeddings.weight": "embed.token.weight",
    "embeddings.position_embeddings.weight": "embed.position.weight",
    "embeddings.token_type_embeddings.weight": "embed.token_type.weight",
    "embeddings.LayerNorm.weight": "embed.norm.weight",
    "embeddings.LayerNorm.bias": "embed.norm.bias",
    "pooler.dense.weight": "pooler.weight",
    "pooler.dense.bias": "pooler.bias",
}
_BERT_LAYER = {  # encoder.layer.{i}.<HF module> -> layers.{i}.<canao module>
    "attention.self.query": "attn.q",
    "attention.self.key": "attn.k",
    "attention.self.value": "attn.v",
    "attention.output.dense": "attn.out",
    "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "ffn.up",
    "output.dense": "ffn.down",
    "output.LayerNorm": "ffn_norm",
}
_GPT2_TOP = {"wte": "embed.token", "wpe": "embed.position", "ln_f": "final_norm"}  # transformer.<HF> -> <canao>
_GPT2_LINEAR = {"attn.c_proj": "attn.out", "mlp.c_fc": "ffn.up", "mlp.c_proj": "ffn.down"}  # Conv1D: transposed
_GPT2_NORM = {"ln_1": "attn_norm", "ln_2": "ffn_norm"}  # h.{i}.<HF> -> layers.{i}.<canao>


def _bert_key_to_canao(key: str) -> Optional[str]:
    """HF BERT backbone key (prefix stripped) -> canao backbone key; None for keys canao drops."""
    key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
    if key in _BERT_FIXED:
        return _BERT_FIXED[key]
    if not key.startswith("encoder.layer."):
        return None
    index, rest = key[len("encoder.layer.") :].split(".", 1)
    module, param = rest.rsplit(".", 1)
    return f"layers.{index}.{_BERT_LAYER[module]}.{param}" if module in _BERT_LAYER else None


def _split_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Strip `prefix` from keys that carry it (task models nest the backbone under it)."""
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()}


def _bert_to_canao(state: dict[str, torch.Tensor], task: str, origins: dict[str, str]) -> dict[str, torch.Tensor]:
    """HF BERT state -> canao state; `origins` records each canao key's checkpoint key."""
    prefixed = {k[len("bert.") :]: k for k in state if k.startswith("bert.")}
    state = _split_prefix(state, "bert.")
    out: dict[str, torch.Tensor] = {}
    backbone = "" if task == "backbone" else "encoder."
    head = {"classification": "classifier.", "qa": "qa_outputs."}.get(task)
    for key, tensor in state.items():
        if key.startswith(("classifier.", "qa_outputs.")):
            if head is not None and key.startswith(head):
                out[key.replace("qa_outputs.", "qa.")] = tensor
                origins[key.replace("qa_outputs.", "qa.")] = key
            continue
        mapped = _bert_key_to_canao(key)
        if mapped is None:
            if not key.startswith(_IGNORED_PREFIXES):
                log.warning("ignoring checkpoint entry %s: canao has no parameter for it", key)
            continue
        out[backbone + mapped] = tensor
        origins[backbone + mapped] = prefixed.get(key, key)
    return out


def _gpt2_to_canao(state: dict[str, torch.Tensor], spec: ArchSpec, origins: dict[str, str]) -> dict[str, torch.Tensor]:
    """HF GPT-2 state -> canao state (split c_attn, transpose Conv1D); records `origins`."""
    prefixed = {k[len("transformer.") :]: k for k in state if k.startswith("transformer.")}
    state = _split_prefix(state, "transformer.")
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.count(".") == 1 and key.split(".")[0] in _GPT2_TOP:
            module, param = key.split(".")
            ours = f"{_GPT2_TOP[module]}.{param}"
            out[ours], origins[ours] = tensor, prefixed.get(key, key)
        elif key.startswith("h."):
            index, tail = key[2:].split(".", 1)  # "h.{i}.{module}.{param}"
            module, param = tail.rsplit(".", 1)
            if tail in ("attn.bias", "attn.masked_bias"):
                continue  # causal-mask buffers of older transformers versions
            prefix = f"layers.{index}."
            if module == "attn.c_attn":
                width = spec.layers[int(index)].attn_width
                if tensor.shape[-1] != 3 * width:
                    raise CheckpointError(
                        f"tensor `{key}` has shape {tuple(tensor.shape)}, expected last axis {3 * width}."
                    )
                for name, part in zip("qkv", tensor.split(width, dim=-1)):
                    out[f"{prefix}attn.{name}.{param}"] = part.T if param == "weight" else part
            elif module in _GPT2_LINEAR:
                out[f"{prefix}{_GPT2_LINEAR[module]}.{param}"] = tensor.T if param == "weight" else tensor
            elif module in _GPT2_NORM:
                out[f"{prefix}{_GPT2_NORM[module]}.{param}"] = tensor
            else:
                log.warning("ignoring checkpoint entry %s: canao has no parameter for it", key)
                continue
            origins.update({k: prefixed.get(key, key) for k in out if k.startswith(prefix) and k not in origins})
        elif key == "lm_head.weight":
            wte = state.get("wte.weight")
            if wte is not None and (wte.shape != tensor.shape or not torch.equal(wte, tensor)):
                raise CheckpointError(
                    "tensor `lm_head.weight` differs from `wte.weight`; canao's decoder "
                    "ties the LM head to the token embedding and cannot load an untied head."
                )
        else:
            log.warning("ignoring checkpoint entry %s: canao has no parameter for it", key)
    return out


def canao_to_hf(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights under HF key names (contiguous, as safetensors wants)."""
    spec, task = backbone_of(model).spec, task_of(model)
    state = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    if spec.kind == "encoder":
        inverse = {}
        for hf_key in _bert_template_keys(spec):
            inverse[_bert_key_to_canao(hf_key)] = hf_key
        prefix_in, prefix_out = ("", "") if task == "backbone" else ("encoder.", "bert.")
        for ours, hf_key in inverse.items():
            if prefix_in + ours in state:  # the QA model has no pooler
                out[prefix_out + hf_key] = state[prefix_in + ours]
        for name in ("classifier", "qa"):
            for param in ("weight", "bias"):
                if f"{name}.{param}" in state:
                    out[f"{'qa_outputs' if name == 'qa' else name}.{param}"] = state[f"{name}.{param}"]
    else:
        for theirs, ours in _GPT2_TOP.items():
            for param in ("weight", "bias"):
                if f"{ours}.{param}" in state:  # the embeddings have no bias
                    out[f"transformer.{theirs}.{param}"] = state[f"{ours}.{param}"]
        for i in range(spec.num_layers):
            p, h = f"layers.{i}.", f"transformer.h.{i}."
            out[h + "attn.c_attn.weight"] = torch.cat([state[p + f"attn.{n}.weight"] for n in "qkv"], 0).T
            out[h + "attn.c_attn.bias"] = torch.cat([state[p + f"attn.{n}.bias"] for n in "qkv"], 0)
            for theirs, ours in _GPT2_LINEAR.items():
                out[h + theirs + ".weight"] = state[p + ours + ".weight"].T
                out[h + theirs + ".bias"] = state[p + ours + ".bias"]
            for theirs, ours in _GPT2_NORM.items():
                out[h + theirs + ".weight"] = state[p + ours + ".weight"]
                out[h + theirs + ".bias"] = state[p + ours + ".bias"]
    return {k: v.detach().contiguous().clone() for k, v in out.items()}


def _bert_template_keys(spec: ArchSpec) -> list[str]:
    keys = list(_BERT_FIXED)
    for i in range(spec.num_layers):
        keys += [f"encoder.layer.{i}.{m}.{p}" for m in _BERT_LAYER for p in ("weight", "bias")]
    return keys


# ------------------------------------------------------------------ weights
def read_weights(directory: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """All tensors of the checkpoint and the file they came from (safetensors preferred; int8-compressed
    checkpoints, see canao.models.compressed, come back dequantized to float32)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from canao.models.compressed import INT8_FILE, read_int8_file

    single, index = directory / "model.safetensors", directory / "model.safetensors.index.json"
    try:
        if single.exists():
            return load_file(str(single)), single
        if index.exists():
            shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
            if not shards:
                raise CheckpointError(f"{index}: field `weight_map` is missing or empty.")
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(load_file(str(directory / shard)))
            return state, index
    except SafetensorError as err:
        raise CheckpointError(
            f"{single if single.exists() else index}: cannot be read as safetensors ({err})."
        ) from err
    except FileNotFoundError as err:
        raise CheckpointError(f"{err.filename}: file not found (listed in {index}).") from err
    compressed = directory / INT8_FILE
    if compressed.exists():
        return read_int8_file(compressed), compressed
    bin_path = directory / "pytorch_model.bin"
    if bin_path.exists():
        try:
            return torch.load(bin_path, map_location="cpu", weights_only=True), bin_path
        except Exception as err:  # torch raises many types for corrupt/unsafe pickles
            raise CheckpointError(f"{bin_path}: cannot be loaded with weights_only=True ({err}).") from err
    raise CheckpointError(
        f"{directory}: no weights found; expected model.safetensors, model.safetensors.index.json, "
        f"{INT8_FILE} or pytorch_model.bin."
    )


def _field_for_mismatch(key: str, got: tuple[int, ...], want: tuple[int, ...], kind: str) -> str:
    """The config field that sizes the first axis on which `got` and `want` differ."""
    try:
        roles = roles_of(key.removeprefix("encoder."))
    except SpecError:
        return "?"
    axis = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), 0)
    role = roles[axis] if len(got) == len(roles) else "-"
    fields = _CONFIG_FIELDS[kind]
    if role == "-":
        return fields["V"] if key.endswith("token.weight") else "num_labels"
    return fields[role]


_CONFIG_FIELDS = {
    "encoder": {
        "H": "hidden_size",
        "A": "num_attention_heads",
        "F": "intermediate_size",
        "P": "max_position_embeddings",
        "T": "type_vocab_size",
        "V": "vocab_size",
    },
    "decoder": {"H": "n_embd", "A": "n_head", "F": "n_inner", "P": "n_positions", "T": "-", "V": "vocab_size"},
}


def _check_and_load(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    source: Path,
    config_path: Path,
    new_head: bool,
    origins: dict[str, str],
    kind: str,
) -> None:
    """Load `state` after checking names and shapes.

    A missing pooler, and with `new_head` a missing task head, start from the
    model's fresh initialisation (fine-tuning a backbone checkpoint for a task).
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    fresh = [k for k in missing if ".pooler." in f".{k}" or (new_head and k.startswith(("classifier.", "qa.")))]
    if fresh:
        log.info("%s: no weights for %s; they start from a fresh initialisation.", source, fresh)
    missing = [k for k in missing if k not in fresh]
    unused = sorted(set(state) - set(expected))
    if unused:
        log.info("%s: %s are not used by the %s model.", source, unused, type(model).__name__)
    state = {**{k: expected[k] for k in fresh}, **{k: v for k, v in state.items() if k in expected}}
    if missing:
        raise CheckpointError(
            f"{source}: weights for {missing[:5]}{' ...' if len(missing) > 5 else ''} "
            f"({len(missing)} in all) are missing for the model that {config_path} describes."
        )
    for key, tensor in state.items():
        want = tuple(expected[key].shape)
        if tuple(tensor.shape) != want:
            raise CheckpointError(
                f"{source}: tensor `{origins.get(key, key)}` (canao `{key}`) has shape {tuple(tensor.shape)}, "
                f"but {config_path} implies {want}; "
                f"check its field `{_field_for_mismatch(key, tensor.shape, want, kind)}`."
            )
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})


def load_pretrained(directory: Path | str, *, task: Optional[str] = None, dropout: float = 0.0) -> Pretrained:
    """Read a BERT or GPT-2 checkpoint directory into canao's reference model."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint directory not found.")
    config_path = directory / "config.json"
    config = _read_json(config_path)
    spec, found_task = spec_from_config(config, config_path)
    task = task or found_task
    raw, source = read_weights(directory)
    labels = {int(k): v for k, v in config.get("id2label", {}).items()} or None
    num_labels = int(raw["classifier.weight"].shape[0]) if "classifier.weight" in raw else len(labels or {}) or 2
    model = build_model(spec, task, num_labels=num_labels, dropout=dropout)
    origins: dict[str, str] = {}
    state = _bert_to_canao(raw, task, origins) if spec.kind == "encoder" else _gpt2_to_canao(raw, spec, origins)
    _check_and_load(model, state, source, config_path, new_head=task != found_task, origins=origins, kind=spec.kind)
    has_tokenizer = any((directory / name).exists() for name in ("tokenizer.json", "vocab.txt", "vocab.json"))
    tokenizer = load_tokenizer(directory) if has_tokenizer else None
    model.eval()
    return Pretrained(model, spec, task, tokenizer, directory, labels if task == "classification" else None)


def save_pretrained(
    model: nn.Module,
    directory: Path | str,
    *,
    tokenizer: Any = None,
    labels: Optional[dict[int, str]] = None,
    copy_tokenizer_files_from: Optional[Path] = None,
) -> Path:
    """Write the HF layout atomically: everything goes to a temp dir that is renamed into place."""
    from safetensors.torch import save_file

    directory = Path(directory)
    spec, task = backbone_of(model).spec, task_of(model)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_directory(directory.parent, f".{directory.name}.")
    try:
        (tmp / "config.json").write_text(json.dumps(config_from_spec(spec, task, labels), indent=2))
        save_file(canao_to_hf(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        share_file(tmp / "model.safetensors")
        if copy_tokenizer_files_from is not None:
            for name in TOKENIZER_FILES:
                if (Path(copy_tokenizer_files_from) / name).exists():
                    shutil.copy2(Path(copy_tokenizer_files_from) / name, tmp / name)
        if tokenizer is not None:
            save_tokenizer(tokenizer, tmp)
        replace_directory(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory
