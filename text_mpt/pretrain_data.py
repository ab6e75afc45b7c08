"""Text for tiny-t5 pretraining: JSON Lines records → text, a SentencePiece tokenizer saved as a
``T5Tokenizer`` directory, fixed-length token chunks and a span-corruption dataset."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mvlpt.core.errors import ConfigError, DataError

from .span_corruption import span_corrupt

#: JSON fields that hold labels or ids, not text
SKIP_FIELDS = frozenset({"idx", "label", "label_name", "label_names", "id", "answer"})

def default_data_root() -> Path:
    """``$MVLPT_SHARED_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("MVLPT_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def record_text(record: Any) -> list[str]:
    """Every string in a JSON record (nested too), except label/id fields."""
    if isinstance(record, str):
        return [record] if record.strip() else []
    if isinstance(record, dict):
        return [s for k, v in record.items() if k not in SKIP_FIELDS for s in record_text(v)]
    if isinstance(record, list):
        return [s for v in record for s in record_text(v)]
    return []


def read_texts(root: str | Path, files: Sequence[str]) -> list[str]:
    """One text per record (its strings joined by spaces) from each JSON Lines file."""
    texts = []
    for rel in files:
        path = Path(root) / rel
        if not path.is_file():
            raise DataError(f"text file not found: {path} (set data.root or $MVLPT_SHARED_DATA)")
        with path.open() as f:
            texts += [" ".join(record_text(json.loads(line))) for line in f if line.strip()]
    return [t for t in texts if t]


def train_tokenizer(texts: Sequence[str], out_dir: str | Path, vocab_size: int = 8000, extra_ids: int = 100) -> Any:
    """Train a SentencePiece unigram model (identity normalisation, T5's special ids; ``vocab_size`` is
    an upper bound for tiny corpora) and save it as a
    ``T5Tokenizer`` directory (``tokenizer.json`` + config; the raw model as ``sentencepiece.model``)."""
    import io

    import sentencepiece as spm
    from transformers import T5Tokenizer

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buf, vocab_size=vocab_size, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
        normalization_rule_name="identity", character_coverage=0.9995, input_sentence_size=200_000,
        shuffle_input_sentence=True, seed_sentencepiece_size=200_000, num_threads=1, minloglevel=2,
        hard_vocab_limit=False)
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    tok = T5Tokenizer(vocab=vocab, extra_ids=extra_ids)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(out))
    (out / "sentencepiece.model").write_bytes(buf.getvalue())
    return tok


def sentinel_ids(tokenizer: Any, n: int) -> list[int]:
    """Ids of ``<extra_id_0>`` … ``<extra_id_{n-1}>``."""
    ids = tokenizer.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(n)])
    if any(i is None or i == tokenizer.unk_token_id for i in ids):
        raise ConfigError(f"the tokenizer lacks <extra_id_*> sentinels (needs {n}); train it with extra_ids >= {n}")
    return list(ids)


def make_chunks(tokenizer: Any, texts: Sequence[str], length: int) -> list[list[int]]:
    """Tokenize (no EOS), concatenate and cut into chunks of ``length`` tokens (the tail is dropped)."""
    stream: list[int] = []
    for i in range(0, len(texts), 1000):
        for ids in tokenizer(list(texts[i:i + 1000]), add_special_tokens=False)["input_ids"]:
            stream += ids
    return [stream[i:i + length] for i in range(0, len(stream) - length + 1, length)]


class SpanCorruptionDataset(Dataset):
    """Chunks → ``{"input_ids", "labels"}`` by span corruption. Training draws a new corruption per
    access (Python ``random``, seeded per draw by the loop); ``fixed`` uses the chunk index as seed."""

    def __init__(self, chunks: Sequence[Sequence[int]], sentinels: Sequence[int], eos_id: int,
                 noise_density: float = 0.15, mean_noise_span_length: float = 3.0, fixed: bool = False):
        if not chunks:
            raise DataError("no text chunks: the corpus is shorter than one chunk")
        self.chunks, self.sentinels, self.eos_id = list(chunks), list(sentinels), eos_id
        self.noise_density, self.mean_span, self.fixed = noise_density, mean_noise_span_length, fixed

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> dict[str, Any]:
        rng = random.Random(i if self.fixed else random.getrandbits(64))
        inputs, labels = span_corrupt(self.chunks[i], self.sentinels, self.eos_id, self.noise_density, self.mean_span, rng)
        return {"input_ids": inputs, "labels": labels}


def collate(samples: list[dict[str, Any]], pad_id: int = 0) -> dict[str, Any]:
    """Right-pad inputs with ``pad_id`` and labels with -100."""
    def pad(rows: list[list[int]], value: int) -> Tensor:
        n = max(len(r) for r in rows)
        return torch.tensor([r + [value] * (n - len(r)) for r in rows], dtype=torch.long)

    inputs = pad([s["input_ids"] for s in samples], pad_id)
    return {"input_ids": inputs, "attention_mask": (inputs != pad_id).long(),
            "labels": pad([s["labels"] for s in samples], -100),
            "task_ids": torch.tensor([s["task_id"] for s in samples], dtype=torch.long),
            "index": torch.tensor([s["index"] for s in samples], dtype=torch.long)}
