"""The T5 head's pretraining wing: span-corruption + supervised-mixture pretraining of the shipped ``tiny-t5``.

Nothing in the head's model layers (``text_mpt.model``, ``backbone``, ``pipeline``, ...) imports this
package; only the ``text-mpt pretrain`` command and ``python -m text_mpt.pretrain`` do. Shared tooling
(the commit recorded in an export, ``export_dir``) lives in :mod:`mvlpt.core.export`.

* :mod:`~text_mpt.pretrain.recipe` — the recipe config, the pretraining task model, the run and the export;
* :mod:`~text_mpt.pretrain.data` — the corpus, the SentencePiece tokenizer, chunks, the supervised part and
  the target-task contamination checks;
* :mod:`~text_mpt.pretrain.span_corruption` — T5's span corruption;
* :mod:`~text_mpt.pretrain.synthetic` — generated sentence-pair tasks;
* :mod:`~text_mpt.pretrain.distilled` — the ``similar`` pair task labelled by a pretrained sentence encoder;
* :mod:`~text_mpt.pretrain.embed_init` — token embeddings started from a pretrained sentence encoder (``model.embed_init``).

Command::

    python -m text_mpt.pretrain --config configs/pretrain/tiny_t5.yaml [key=value ...]   # = text-mpt pretrain ...
"""

from __future__ import annotations

from .data import (ALLOWED_SUPERVISED, TARGET_DIRS, TARGET_TASKS, SpanCorruptionDataset, SupervisedDataset, check_files,
                   check_supervised, collate, default_data_root, is_target_file, make_chunks, read_supervised, read_texts,
                   sentinel_ids, supervised_file, target_strings, train_tokenizer)
from .recipe import (FIXED_TEXT, PACKAGE_DIR, T5DataConfig, T5ModelConfig, T5PretrainConfig, T5PretrainModel, build_t5,
                     export_from_run, export_t5, fixed_sample_loss, held_out_split, machine, main, mixture_record,
                     prepare, rank_eval_items, resolve_export_dir, run, weighted_order)
from .span_corruption import random_spans_noise_mask, span_corrupt

__all__ = [
    "ALLOWED_SUPERVISED", "TARGET_DIRS", "TARGET_TASKS", "SpanCorruptionDataset", "SupervisedDataset", "check_files",
    "check_supervised", "collate", "default_data_root", "is_target_file", "make_chunks", "read_supervised", "read_texts",
    "sentinel_ids", "supervised_file", "target_strings", "train_tokenizer",
    "FIXED_TEXT", "PACKAGE_DIR", "T5DataConfig", "T5ModelConfig", "T5PretrainConfig", "T5PretrainModel", "build_t5",
    "export_from_run", "export_t5", "fixed_sample_loss", "held_out_split", "machine", "main", "mixture_record", "prepare",
    "rank_eval_items", "resolve_export_dir", "run", "weighted_order",
    "random_spans_noise_mask", "span_corrupt",
]
