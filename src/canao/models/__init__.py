"""PyTorch reference models built from an ArchSpec, elastic slicing and HF interop."""

from __future__ import annotations

from canao.models.decoder import Decoder, DecoderOutput, KVCache
from canao.models.elastic import check_sliceable, extract_subnet, slice_state_dict
from canao.models.encoder import Encoder, EncoderOutput
from canao.models.heads import EncoderForClassification, EncoderForQuestionAnswering, build_model, mean_pool
from canao.models.hf import Pretrained, load_pretrained, save_pretrained
from canao.models.teacher import load_teacher, teacher_dir
from canao.models.tokenizer import load_tokenizer

__all__ = [
    "Decoder",
    "DecoderOutput",
    "KVCache",
    "Encoder",
    "EncoderOutput",
    "EncoderForClassification",
    "EncoderForQuestionAnswering",
    "build_model",
    "mean_pool",
    "check_sliceable",
    "extract_subnet",
    "slice_state_dict",
    "Pretrained",
    "load_pretrained",
    "save_pretrained",
    "load_teacher",
    "teacher_dir",
    "load_tokenizer",
]
