"""Data for tiny-t5 pretraining, a mixture like the original T5's:

* **span corruption** on text: JSON Lines records → text, a SentencePiece tokenizer saved as a
  ``T5Tokenizer`` directory, fixed-length token chunks and a span-corruption dataset;
* **supervised text-to-text tasks**: rows of allowed GLUE training files formatted with the project's
  own task formats (:mod:`text_mpt.tasks`), a short task prefix in front of the input
  (``"mnli premise: ... hypothesis: ..."``, as in T5) and the gold verbalizer as the target.

No file of a miniature *target* task (:data:`TARGET_DIRS`) may enter either part, nor the tokenizer.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mvlpt.core.data_root import shared_data_root
from mvlpt.core.errors import ConfigError, DataError

from .span_corruption import span_corrupt

#: JSON fields that hold labels or ids, not text
SKIP_FIELDS = frozenset({"idx", "label", "label_name", "label_names", "id", "answer"})

#: data folders of the miniature target tasks: never pretrained on (text, supervision or tokenizer)
TARGET_DIRS = ("glue/RTE", "glue/MRPC", "superglue/CB", "superglue/BoolQ", "superglue/RTE")
#: task names (text_mpt.tasks) of the target tasks
TARGET_TASKS = ("rte", "mrpc", "cb", "boolq", "superglue_rte")
#: tasks whose training split may be used as supervised pretraining data
ALLOWED_SUPERVISED = ("mnli", "qnli", "qqp", "sst2", "cola", "stsb")


def is_target_file(rel: str) -> bool:
    """Whether ``rel`` (a path under the data root) lies in a target task's folder (case-insensitive)."""
    parts = Path(rel).as_posix().lower().strip("/").split("/")
    return any(parts[:2] == d.lower().split("/") for d in TARGET_DIRS)


def check_files(files: Sequence[str]) -> None:
    """Reject target-task files and non-training splits."""
    for rel in files:
        if is_target_file(rel):
            raise ConfigError(f"data file {rel!r} belongs to a target task ({', '.join(TARGET_DIRS)}); "
                              "target-task data must not be pretrained on")
        if Path(rel).name != "train.jsonl":
            raise ConfigError(f"data file {rel!r} is not a training split (train.jsonl); never pretrain on dev/val")


def check_supervised(tasks: Sequence[str]) -> None:
    from ..tasks import canonical_name

    for t in tasks:
        name = canonical_name(t)
        if name in TARGET_TASKS:
            raise ConfigError(f"supervised task {t!r} is a target task; target-task data must not be pretrained on")
        if name not in ALLOWED_SUPERVISED:
            raise ConfigError(f"supervised task {t!r} is not allowed; choose from {list(ALLOWED_SUPERVISED)}")

def default_data_root() -> Path:
    """``$MVLPT_DATA`` (old name ``$MVLPT_SHARED_DATA``) or ``<repo>/../shared/data``."""
    return shared_data_root()


def record_text(record: Any) -> list[str]:
    """Every string in a JSON record (nested too), except label/id fields."""
    if isinstance(record, str):
        return [record] if record.strip() else []
    if isinstance(record, dict):
        return [s for k, v in record.items() if k not in SKIP_FIELDS for s in record_text(v)]
    if isinstance(record, list):
        return [s for v in record for s in record_text(v)]
    return []


#: words per n-gram of the overlap filter (GPT-3-style decontamination, shorter for short GLUE texts)
NGRAM = 8


def _words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() else " " for c in text).split()


def ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    """Word ``n``-grams of ``text`` (lower-cased, punctuation dropped); a shorter text is one n-gram."""
    w = _words(text)
    if len(w) < n:
        return {tuple(w)} if w else set()
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def target_strings(root: str | Path, n: int = NGRAM) -> set[tuple[str, ...]]:
    """Word n-grams of every text field of every split of the target tasks found under ``root``
    (fields shorter than ``n`` words count whole, when at least 4 words): a pretraining record sharing
    one of them is dropped. Sentences recur across GLUE/SuperGLUE sources (STS-B's MSRpar pairs come
    from MRPC's corpus; CB and MNLI's telephone genre both quote Switchboard)."""
    out: set[tuple[str, ...]] = set()
    for d in TARGET_DIRS:
        folder = Path(root) / d
        for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else ():
            with path.open() as f:
                for line in f:
                    if line.strip():
                        for s in record_text(json.loads(line)):
                            out.update(g for g in ngrams(s, n) if len(g) >= 4)
    return out


def is_contaminated(record: Any, targets: set[tuple[str, ...]]) -> bool:
    """Whether a record shares a word n-gram (or a whole short field) with a target task."""
    if not targets:
        return False
    texts = record_text(record)
    return any(g in targets for s in texts for g in ngrams(s)) or \
        any(tuple(_words(s)) in targets for s in texts)


def _clean_rows(path: Path, what: str, key: str, exclude: set[tuple[str, ...]] | None,
                dropped: dict[str, int] | None) -> list[dict[str, Any]]:
    """The JSON Lines records of ``path`` that share no n-gram of ``exclude``; how many were left out
    goes to ``dropped[key]``."""
    if not path.is_file():
        raise DataError(f"{what} file not found: {path} (set data.root or $MVLPT_DATA)")
    with path.open() as f:
        records = [json.loads(line) for line in f if line.strip()]
    kept = [r for r in records if not is_contaminated(r, exclude or set())]
    if dropped is not None:
        dropped[key] = len(records) - len(kept)
    return kept


def read_texts(root: str | Path, files: Sequence[str], exclude: set[tuple[str, ...]] | None = None,
               dropped: dict[str, int] | None = None) -> list[str]:
    """One text per record (its strings joined by spaces) from each JSON Lines file; records holding
    an n-gram of ``exclude`` (:func:`target_strings`) are left out (counted per file in ``dropped``)."""
    texts = []
    check_files(files)
    for rel in files:
        kept = _clean_rows(Path(root) / rel, "text", rel, exclude, dropped)
        texts += [" ".join(record_text(r)) for r in kept]
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


def supervised_file(root: str | Path, task: str) -> Path:
    """The training JSON Lines file of a built-in task under ``root``."""
    from ..tasks import get_task

    spec = get_task(task)
    rel = f"{spec.local_dir}/{spec.local_splits[0]}.jsonl"
    check_files([rel])
    return Path(root) / rel


def supervised_pair(task: str, row: dict[str, Any]) -> list[tuple[str, str]]:
    """``(input, target)`` texts of one row: ``"<task> <input_text>"`` → the gold verbalizer."""
    from ..tasks import get_task

    spec = get_task(task)
    out = []
    for flat in spec.rows(row):
        ex = spec.example(flat)
        out.append((f"{spec.name} {ex.input_text}", ex.candidates[ex.label]))
    return out


def read_supervised(root: str | Path, tasks: Sequence[str], exclude: set[tuple[str, ...]] | None = None,
                    dropped: dict[str, int] | None = None) -> dict[str, list[tuple[str, str]]]:
    """Task name → ``(input, target)`` texts of its training file (rows sharing an n-gram of
    ``exclude`` are left out, counted in ``dropped``)."""
    check_supervised(tasks)
    out: dict[str, list[tuple[str, str]]] = {}
    for task in tasks:
        kept = _clean_rows(supervised_file(root, task), "supervised", task, exclude, dropped)
        out[task] = [p for r in kept for p in supervised_pair(task, r)]
    return out


class SupervisedDataset(Dataset):
    """Tokenized ``(input, target)`` pairs → ``{"input_ids", "labels"}`` (both end with EOS; inputs
    truncated to ``max_input_length`` tokens)."""

    def __init__(self, tokenizer: Any, pairs: Sequence[tuple[str, str]], max_input_length: int = 128,
                 max_target_length: int = 16, order: Sequence[int] | None = None):
        if not pairs:
            raise DataError("no supervised examples")
        self.pairs = list(pairs)
        #: item ``i`` is pair ``order[i]`` (a task-weighted, cycled list); None = the pairs in turn
        self.order = list(order) if order is not None else None
        eos = tokenizer.eos_token_id
        enc = lambda texts, n: [ids[: n - 1] + [eos] for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
        self.inputs = enc([p[0] for p in self.pairs], max_input_length)
        self.labels = enc([p[1] for p in self.pairs], max_target_length)

    def __len__(self) -> int:
        return len(self.order) if self.order is not None else len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        j = self.order[i] if self.order is not None else i
        return {"input_ids": self.inputs[j], "labels": self.labels[j]}


def collate(samples: list[dict[str, Any]], pad_id: int = 0) -> dict[str, Any]:
    """Right-pad inputs with ``pad_id`` and labels with -100; rows with an embedding ``target`` give
    ``target`` (zeros for the other rows) and ``target_mask``."""
    def pad(rows: list[list[int]], value: int) -> Tensor:
        n = max(len(r) for r in rows)
        return torch.tensor([r + [value] * (n - len(r)) for r in rows], dtype=torch.long)

    inputs = pad([s["input_ids"] for s in samples], pad_id)
    batch = {"input_ids": inputs, "attention_mask": (inputs != pad_id).long(),
             "labels": pad([s["labels"] for s in samples], -100),
             "task_ids": torch.tensor([s["task_id"] for s in samples], dtype=torch.long),
             "index": torch.tensor([s["index"] for s in samples], dtype=torch.long)}
    targets = [s.get("target") for s in samples]
    if any(t is not None for t in targets):  # sentence-embedding distillation rows (zeros elsewhere)
        dim = next(t for t in targets if t is not None).shape[-1]
        batch["target"] = torch.stack([t if t is not None else torch.zeros(dim) for t in targets])
        batch["target_mask"] = torch.tensor([t is not None for t in targets])
    return batch
