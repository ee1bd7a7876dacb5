"""The models the end-to-end runs use, and their prompts.

Models of real MoE architectures, built from a ``config.json`` written here;
vLLM's ``load_format="dummy"`` gives them random, seeded weights, so nothing
is downloaded. ``MODELS``: small ones (4 layers) for the offline benchmark;
``FULL_MODELS``: the published models' shapes at full size (every layer,
expert count, width and vocabulary) for the serving benchmark. Prompts are
token ids (no tokenizer).
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


# transformers_version: a config written for transformers 5 (without it,
# transformers 5 loads a local tokenizer with a warning meant for old Mistral
# tokenizers)
_COMMON = {"attention_dropout": 0.0, "initializer_range": 0.02, "use_cache": True,
           "tie_word_embeddings": False, "torch_dtype": "bfloat16", "dtype": "bfloat16",
           "transformers_version": "5.5.3"}

# The published configs' shapes (transformers 5 keys; rope given both ways).
# Long-context rope scaling is left out (DeepSeek-V2-Lite's yarn): it changes
# no tensor shape and no MoE work.
FULL_MODELS: dict[str, dict[str, Any]] = {
    # Qwen/Qwen3-30B-A3B: 48 layers, 128 experts, top-8, 30.5B parameters
    "qwen3-30b-a3b": {
        "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
        "hidden_size": 2048, "num_hidden_layers": 48, "num_attention_heads": 32,
        "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 6144,
        "moe_intermediate_size": 768, "num_experts": 128, "num_experts_per_tok": 8,
        "decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": True,
        "output_router_logits": False, "router_aux_loss_coef": 0.001,
        "vocab_size": 151936, "max_position_embeddings": 40960, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
        "hidden_act": "silu", "attention_bias": False, "use_sliding_window": False,
        "sliding_window": None, "max_window_layers": 48,
        "bos_token_id": 151643, "eos_token_id": 151645, **_COMMON,
    },
    # deepseek-ai/DeepSeek-V2-Lite: 27 layers (the first dense), MLA attention,
    # 64 routed experts top-6 plus 2 shared, 15.7B parameters
    "deepseek-v2-lite": {
        "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
        "hidden_size": 2048, "num_hidden_layers": 27, "num_attention_heads": 16,
        "num_key_value_heads": 16, "intermediate_size": 10944, "moe_intermediate_size": 1408,
        "n_routed_experts": 64, "n_shared_experts": 2, "num_experts_per_tok": 6,
        "first_k_dense_replace": 1, "moe_layer_freq": 1, "n_group": 1, "topk_group": 1,
        "topk_method": "greedy", "scoring_func": "softmax", "norm_topk_prob": False,
        "routed_scaling_factor": 1.0, "kv_lora_rank": 512, "q_lora_rank": None,
        "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
        "vocab_size": 102400, "max_position_embeddings": 163840, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "hidden_act": "silu", "attention_bias": False,
        "bos_token_id": 100000, "eos_token_id": 100001, **_COMMON,
    },
    # mistralai/Mixtral-8x7B-v0.1: 32 layers, 8 experts, top-2, 46.7B parameters
    "mixtral-8x7b": {
        "architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
        "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 14336,
        "num_local_experts": 8, "num_experts_per_tok": 2, "output_router_logits": False,
        "router_aux_loss_coef": 0.02, "router_jitter_noise": 0.0,
        "vocab_size": 32000, "max_position_embeddings": 32768, "rms_norm_eps": 1e-5,
        "rope_theta": 1000000.0,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
        "hidden_act": "silu", "sliding_window": None,
        "bos_token_id": 1, "eos_token_id": 2, **_COMMON,
    },
}


def model_config(name: str) -> dict[str, Any]:
    """The config of ``name``, a key of ``MODELS`` or ``FULL_MODELS``."""
    if name in MODELS:
        return MODELS[name]
    if name in FULL_MODELS:
        return FULL_MODELS[name]
    raise KeyError(f"unknown model {name!r}; known: {', '.join([*MODELS, *FULL_MODELS])}")


def write_model(name: str, directory: Path) -> Path:
    """Writes ``config.json`` of model ``name`` (``MODELS`` or
    ``FULL_MODELS``) into ``directory`` (created); returns the directory.
    vLLM's dummy loader needs nothing else."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(model_config(name), indent=1) + "\n")
    return directory


def moe_shape(cfg: dict[str, Any]) -> tuple[int, int]:
    """(routed experts, experts per token) of a config."""
    experts = cfg.get("num_experts") or cfg.get("n_routed_experts") or cfg.get("num_local_experts")
    return int(experts), int(cfg["num_experts_per_tok"])


def param_count(cfg: dict[str, Any]) -> int:
    """Parameters of a config's model (embeddings, attention, MLPs and MoE
    layers, norms left out): enough to size its bf16 weights."""
    h, layers, vocab = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    experts, _ = moe_shape(cfg)
    heads = cfg["num_attention_heads"]
    if "kv_lora_rank" in cfg:  # multi-head latent attention
        qk = cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]
        rank, rope, v = cfg["kv_lora_rank"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
        attn = h * heads * qk + h * (rank + rope) + rank * heads * (cfg["qk_nope_head_dim"] + v) \
            + heads * v * h
    else:
        hd = cfg.get("head_dim", h // heads)
        attn = 2 * h * heads * hd + 2 * h * cfg["num_key_value_heads"] * hd
    moe_inter = cfg.get("moe_intermediate_size", cfg["intermediate_size"])
    moe = experts * 3 * h * moe_inter + h * experts + cfg.get("n_shared_experts", 0) * 3 * h * moe_inter
    dense_layers = cfg.get("first_k_dense_replace", 0)
    mlp = dense_layers * 3 * h * cfg["intermediate_size"] + (layers - dense_layers) * moe
    embed = vocab * h * (1 if cfg.get("tie_word_embeddings") else 2)
    return layers * attn + mlp + embed


def kv_bytes_per_token(cfg: dict[str, Any], tp: int = 1) -> int:
    """bf16 KV-cache bytes one token takes on each GPU at tensor parallel
    ``tp`` (MLA's latent cache is replicated; KV heads are split, at least
    one per GPU)."""
    layers = cfg["num_hidden_layers"]
    if "kv_lora_rank" in cfg:
        return layers * (cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"]) * 2
    hd = cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    return layers * 2 * max(cfg["num_key_value_heads"] // tp, 1) * hd * 2


def make_prompts(count: int, min_len: int, max_len: int, vocab: int, seed: int) -> list[list[int]]:
    """``count`` prompts of token ids, lengths spread evenly over
    [min_len, max_len], ids uniform in [16, vocab - 16); same seed, same prompts."""
    rng = random.Random(seed)
    lengths = [min_len + (max_len - min_len) * i // max(count - 1, 1) for i in range(count)]
    rng.shuffle(lengths)
    return [[rng.randrange(16, vocab - 16) for _ in range(n)] for n in lengths]
