"""The models the end-to-end runs use, and their prompts.

Small models of real MoE architectures, built from a ``config.json`` written
here; vLLM's ``load_format="dummy"`` gives them random, seeded weights, so
nothing is downloaded. Prompts are token ids (no tokenizer).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

# Small models of real MoE architectures that vLLM 0.26 runs (transformers 5
# config keys; rope given both ways so either config reader finds it).
MODELS: dict[str, dict[str, Any]] = {
    "qwen3moe": {
        "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
        "hidden_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 8,
        "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 3072,
        "moe_intermediate_size": 384, "num_experts": 128, "num_experts_per_tok": 8,
        "decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": True,
        "output_router_logits": False, "router_aux_loss_coef": 0.001,
        "vocab_size": 16384, "max_position_embeddings": 4096, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
        "hidden_act": "silu", "attention_bias": False, "attention_dropout": 0.0,
        "use_sliding_window": False, "sliding_window": None, "max_window_layers": 4,
        "tie_word_embeddings": False, "initializer_range": 0.02, "use_cache": True,
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16", "dtype": "bfloat16",
    },
    "mixtral": {
        "architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
        "hidden_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 8,
        "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 1536,
        "num_local_experts": 8, "num_experts_per_tok": 2, "output_router_logits": False,
        "router_aux_loss_coef": 0.02, "router_jitter_noise": 0.0,
        "vocab_size": 16384, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
        "rope_theta": 1000000.0,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
        "hidden_act": "silu", "sliding_window": None, "attention_dropout": 0.0,
        "tie_word_embeddings": False, "initializer_range": 0.02, "use_cache": True,
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16", "dtype": "bfloat16",
    },
}


def write_model(name: str, directory: Path) -> Path:
    """Writes ``config.json`` of model ``name`` into ``directory`` (created);
    returns the directory. vLLM's dummy loader needs nothing else."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(MODELS[name], indent=1) + "\n")
    return directory


def make_prompts(count: int, min_len: int, max_len: int, vocab: int, seed: int) -> list[list[int]]:
    """``count`` prompts of token ids, lengths spread evenly over
    [min_len, max_len], ids uniform in [16, vocab - 16); same seed, same prompts."""
    rng = random.Random(seed)
    lengths = [min_len + (max_len - min_len) * i // max(count - 1, 1) for i in range(count)]
    rng.shuffle(lengths)
    return [[rng.randrange(16, vocab - 16) for _ in range(n)] for n in lengths]
