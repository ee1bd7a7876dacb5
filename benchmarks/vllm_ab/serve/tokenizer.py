"""A tokenizer for a model directory with dummy weights.

``vllm serve`` and ``vllm bench serve`` need a tokenizer: the server for text
in and out, the client's random dataset to build its prompts (it samples
token ids, decodes them to text and re-encodes that text to check the
length) and to count tokens for TTFT/TPOT. The published models' tokenizers
would have to be downloaded, so the harness writes its own: a word-level
tokenizer (``tokenizers`` JSON format, read by ``transformers`` as a fast
tokenizer) with exactly the model's vocabulary size. Token ``i`` is the word
``w<i>``, the model's BOS and EOS ids are ``<s>`` and ``</s>``, and the
lowest other id is ``<unk>``. Words are split on whitespace and decoded
joined by spaces, so decode then encode gives back the same ids, and a
prompt of n random ids is exactly n tokens. Written as plain JSON: nothing
needs to be imported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def vocabulary(vocab_size: int, bos_id: int, eos_id: int) -> tuple[dict[str, int], dict[str, int]]:
    """(word -> id for every id below ``vocab_size``, special token -> id)."""
    if not (0 <= bos_id < vocab_size and 0 <= eos_id < vocab_size and bos_id != eos_id):
        raise ValueError(f"bad special ids bos={bos_id} eos={eos_id} for vocab {vocab_size}")
    unk_id = min(i for i in range(3) if i not in (bos_id, eos_id))
    special = {"<unk>": unk_id, "<s>": bos_id, "</s>": eos_id}
    names = {i: s for s, i in special.items()}
    return {names.get(i, f"w{i}"): i for i in range(vocab_size)}, special


def tokenizer_json(vocab_size: int, bos_id: int, eos_id: int) -> dict[str, Any]:
    """The ``tokenizer.json`` document (``tokenizers`` serialization format)."""
    vocab, special = vocabulary(vocab_size, bos_id, eos_id)
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for s, i in sorted(special.items(), key=lambda x: x[1])]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None, "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": None, "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    }


def write_tokenizer(directory: Path, vocab_size: int, bos_id: int, eos_id: int) -> list[Path]:
    """Writes the tokenizer files into ``directory`` (next to config.json);
    returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", **specials,
              "model_max_length": 1 << 20, "add_bos_token": False, "add_eos_token": False,
              "clean_up_tokenization_spaces": False}
    docs = (tokenizer_json(vocab_size, bos_id, eos_id), config, specials)
    paths = []
    for name, doc in zip(TOKENIZER_FILES, docs):
        path = directory / name
        path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
        paths.append(path)
    return paths


def write_model_tokenizer(directory: Path, cfg: dict[str, Any]) -> list[Path]:
    """``write_tokenizer`` with the vocabulary size and BOS/EOS ids of a model config."""
    return write_tokenizer(directory, int(cfg["vocab_size"]), int(cfg["bos_token_id"]),
                           int(cfg["eos_token_id"]))
