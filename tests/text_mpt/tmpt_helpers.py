"""Offline fixtures for text_mpt tests: a tiny seeded T5 with ByT5Tokenizer and synthetic tasks."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from mvlpt.core.prompts import DecomposedPrompt, VanillaPrompt
from text_mpt.backbone import build_tiny_t5, freeze
from text_mpt.config import TinyT5Config
from text_mpt.data import TextCollator, TextTaskDataset
from text_mpt.model import PromptedT5
from text_mpt.tasks import custom_task

WORDS = {"good": "positive", "great": "positive", "bad": "negative", "awful": "negative"}
FILLER = ["the", "movie", "was", "plot", "and", "very", "story", "actor", "film", "really"]
TOPICS = {"ball": "sports", "goal": "sports", "bread": "food", "soup": "food", "chip": "tech", "code": "tech"}


def tokenizer():
    from transformers import ByT5Tokenizer

    return ByT5Tokenizer()


def tiny_backbone(seed: int = 0):
    return freeze(build_tiny_t5(TinyT5Config(seed=seed), vocab_size=384))


def _sentence(rng: random.Random, key: str, n: int = 4) -> str:
    words = rng.sample(FILLER, n)
    words.insert(rng.randrange(n + 1), key)
    return " ".join(words)


def write_synthetic(root: Path, n_train: int = 48, n_dev: int = 16, seed: int = 0) -> dict[str, Path]:
    """Three custom tasks as JSON Lines (train/dev): polarity (2 classes), topic (3), review (2, target)."""
    rng = random.Random(seed)
    out = {}
    for name, table, field in [("polarity", WORDS, "text"), ("topic", TOPICS, "text"), ("review", WORDS, "review")]:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for split, n in [("train", n_train), ("dev", n_dev)]:
            with (folder / f"{split}.jsonl").open("w") as f:
                for _ in range(n):
                    key = rng.choice(sorted(table))
                    f.write(json.dumps({field: _sentence(rng, key), "label": table[key]}) + "\n")
        out[name] = folder
    return out


def task_dicts(paths: dict[str, Path], names: list[str]) -> list[dict]:
    labels = {"polarity": ["negative", "positive"], "topic": ["sports", "food", "tech"], "review": ["negative", "positive"]}
    field = {"polarity": "text", "topic": "text", "review": "review"}
    return [{"name": n, "path": str(paths[n]), "template": f"{n}: {{{field[n]}}}", "labels": labels[n]} for n in names]


def specs():
    return [custom_task("polarity", "polarity: {text}", ["negative", "positive"]),
            custom_task("topic", "topic: {text}", ["sports", "food", "tech"])]


def make_model(kind: str = "vanilla", length: int = 4, seed: int = 0, backbone=None, **kw) -> PromptedT5:
    torch.manual_seed(seed)
    bb = backbone if backbone is not None else tiny_backbone()
    sp = specs()
    prompt = VanillaPrompt(len(sp), (length, 32), init_std=0.5) if kind == "vanilla" else DecomposedPrompt(len(sp), (length, 32))
    return PromptedT5(bb, prompt, sp, tokenizer(), **kw)


def batch_for(rows: list[tuple[int, str, int]], tok=None) -> dict:
    """rows: (task_id, text, label) → a collated batch."""
    tok = tok or tokenizer()
    sp = specs()
    items = []
    for i, (tid, text, label) in enumerate(rows):
        ex = sp[tid].example({"text": text, "label": sp[tid].label_names[label]})
        it = TextTaskDataset(sp[tid].name, [ex], tok, 64, 16)[0]
        items.append({**it, "task_id": tid, "index": i, "example_id": i})
    return TextCollator(tok.pad_token_id)(items)
