import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).parent / "core"))

# one thread: the tiny test models gain nothing from more, and CI machines are small and shared
torch.set_num_threads(1)


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present (a fresh clone has no shared data)")
    return SHARED_DATA


#: the word vocabulary of :func:`tiny_encoder`
TINY_WORDS = ("river garden winter yellow market engine silver forest lantern pocket quiet window thunder "
              "marble pencil harbor candle meadow rocket violet").split()


@pytest.fixture
def tiny_words() -> list[str]:
    """:data:`TINY_WORDS`: the words the :func:`tiny_encoder` vocabulary knows."""
    return list(TINY_WORDS)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer BERT with a word-level vocabulary (:data:`TINY_WORDS`), saved as a Hugging Face directory:
    a stand-in for a sentence encoder such as all-MiniLM-L6-v2."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out = tmp_path_factory.mktemp("encoder")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?"] + list(TINY_WORDS)
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(str(out))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(str(out))
    return out
