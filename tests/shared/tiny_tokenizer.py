"""A byte-level tokenizer with no merges (vocabulary 257: 256 bytes + <pad>): needs no download.

Shared by `tests/conftest.py` and test modules (`from tiny_tokenizer import byte_tokenizer`).
"""

from __future__ import annotations


def byte_tokenizer():
    """One token per byte (offsets map 1:1 to characters); `<pad>` is also the end of sequence."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<pad>"] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<pad>", pad_token="<pad>")
