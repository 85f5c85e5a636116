"""Text encoders through transformers (``bert-base-uncased`` by default; any ``AutoModel``).

``TextEncoder.bert`` holds the transformers model, so TransVG's ``textmodel.bert.*`` keys load
directly. The output is the last hidden layer (TransVG uses layer 12 of 12); ``attention_mask`` is
1 on real tokens, and :meth:`TextEncoder.forward` returns the pad mask with the opposite polarity
(True = pad) for the downstream attention layers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["TextEncoder", "tiny_bert_config", "build_word_tokenizer"]


class TextEncoder(nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.bert = model
        self.hidden_size = int(model.config.hidden_size)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = "bert-base-uncased") -> TextEncoder:
        from transformers import AutoModel

        return cls(AutoModel.from_pretrained(str(name_or_path)))

    @classmethod
    def from_config(cls, config: Any) -> TextEncoder:
        from transformers import AutoModel

        return cls(AutoModel.from_config(config))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) ids and mask (1 = token) -> (B, L, H) features and (B, L) pad mask (True = pad)."""
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state, attention_mask == 0


def tiny_bert_config(
    vocab_size: int = 1000, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4
) -> Any:
    """A small ``BertConfig`` for tests and the CPU demo (built locally, never downloaded)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=512,
    )


def build_word_tokenizer(words: list[str], folder: str | Path) -> Any:
    """A BERT WordPiece tokenizer over ``words`` (plus punctuation), written to ``folder``."""
    import transformers

    tokenizer_cls: Any = (
        getattr(transformers, "BertTokenizerFast", None) or transformers.BertTokenizer
    )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = specials + sorted(set(w.lower() for w in words) | set(".,'s"))
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    return tokenizer_cls(str(folder / "vocab.txt"), do_lower_case=True)
