"""Reading a Hugging Face ``config.json``: every field checked (type, range, consistency), and every missing
field given the value transformers' config class gives it, with a note saying so.

transformers builds a model from ``XConfig(**config_json)``, so a field the file leaves out takes the
class's default: a Mixtral ``config.json`` without ``num_local_experts`` has 8 experts
(``MixtralConfig(num_local_experts=8)``), not zero. ``TRANSFORMERS_DEFAULTS`` holds those defaults for
the fields the builders read, per ``model_type``, copied from transformers'
``models/<type>/configuration_<type>.py`` (``tests/hostile/test_configs.py`` checks every entry against
the installed transformers' classes). A default of ``None`` there means transformers derives the value
from other fields (``num_key_value_heads`` = ``num_attention_heads``, ``head_dim`` = ``hidden_size //
num_attention_heads``); the builders derive it the same way and need no note.

A field present but ``null`` is not "missing": transformers passes ``None`` on, which means "none" for a
sliding window or a LoRA rank, and "derive it" for ``num_key_value_heads`` and ``head_dim``.

Every number is bounded (``calculator.units.MAX_*``) before anything loops over it or multiplies it, so
``num_hidden_layers: 1e12`` or ``10**12`` is one clear error, not a hang.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from calculator import units

_LLAMA = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": None,
          "head_dim": None, "vocab_size": 32000, "intermediate_size": 11008, "max_position_embeddings": 2048}
_QWEN2 = {**_LLAMA, "vocab_size": 151936, "intermediate_size": 22016, "max_position_embeddings": 32768,
          "sliding_window": None}
_GEMMA2 = {"hidden_size": 2304, "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4,
           "head_dim": 256, "vocab_size": 256000, "intermediate_size": 9216, "max_position_embeddings": 8192,
           "sliding_window": 4096}
_DEEPSEEK_V2 = {**_LLAMA, "head_dim": 64, "vocab_size": 102400, "n_routed_experts": 64, "num_experts_per_tok": None,
                "moe_intermediate_size": 1407, "n_shared_experts": 2, "first_k_dense_replace": 0, "kv_lora_rank": 512,
                "q_lora_rank": 1536, "qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128}

TRANSFORMERS_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": _LLAMA,
    "mistral": {**_LLAMA, "intermediate_size": 14336, "num_key_value_heads": 8, "max_position_embeddings": 131072,
                "sliding_window": 4096},
    "mixtral": {**_LLAMA, "intermediate_size": 14336, "num_key_value_heads": 8, "max_position_embeddings": 131072,
                "num_local_experts": 8, "num_experts_per_tok": 2, "sliding_window": None},
    "qwen2": _QWEN2,
    "qwen2_moe": {**_QWEN2, "hidden_size": 2048, "num_hidden_layers": 24, "num_attention_heads": 16,
                  "intermediate_size": 5632, "num_experts": 60, "num_experts_per_tok": 4,
                  "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632, "decoder_sparse_step": 1,
                  "sliding_window": 0},
    "qwen3": _QWEN2,
    "qwen3_moe": {**_QWEN2, "hidden_size": 2048, "num_hidden_layers": 24, "num_key_value_heads": 4,
                  "intermediate_size": 6144, "num_experts": 128, "num_experts_per_tok": 8,
                  "moe_intermediate_size": 768, "decoder_sparse_step": 1},
    "gemma": {**_LLAMA, "hidden_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16, "head_dim": 256,
              "vocab_size": 256000, "intermediate_size": 24576, "max_position_embeddings": 8192},
    "gemma2": _GEMMA2,
    "gemma3_text": {**_GEMMA2, "vocab_size": 262208, "max_position_embeddings": 131072},
    "phi3": {**_LLAMA, "hidden_size": 3072, "vocab_size": 32064, "intermediate_size": 8192,
             "max_position_embeddings": 4096, "sliding_window": None},
    "smollm3": {**_LLAMA, "hidden_size": 2048, "num_hidden_layers": 36, "num_attention_heads": 16,
                "num_key_value_heads": 4, "vocab_size": 128256, "max_position_embeddings": 32768},
    "olmo2": {**_LLAMA, "vocab_size": 50304},
    "granite": _LLAMA,
    "deepseek_v2": _DEEPSEEK_V2,
    "deepseek_v3": {**_DEEPSEEK_V2, "hidden_size": 7168, "num_hidden_layers": 61, "num_attention_heads": 128,
                    "vocab_size": 129280, "intermediate_size": 18432, "max_position_embeddings": 4096,
                    "n_routed_experts": 256, "num_experts_per_tok": 8, "moe_intermediate_size": 2048,
                    "n_shared_experts": 1, "first_k_dense_replace": 3},
    "gpt2": {"n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257, "n_positions": 1024, "n_inner": None},
    "opt": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "vocab_size": 50272,
            "ffn_dim": 3072, "max_position_embeddings": 2048, "word_embed_proj_dim": None},
    "falcon": {"hidden_size": 4544, "num_hidden_layers": 32, "num_attention_heads": 71, "vocab_size": 65024,
               "max_position_embeddings": 2048, "num_kv_heads": None, "ffn_hidden_size": None,
               "num_ln_in_parallel_attn": None},
}
"""Per ``model_type``: the transformers config-class default of each field the builders read (``None``:
derived from other fields). Mixtral's ``num_local_experts`` 8, DeepSeek-V2's ``num_experts_per_tok``
``None`` (no default: a config must give it)."""

_CLASS_NAMES = {"llama": "LlamaConfig", "mistral": "MistralConfig", "mixtral": "MixtralConfig",
                "qwen2": "Qwen2Config", "qwen2_moe": "Qwen2MoeConfig", "qwen3": "Qwen3Config",
                "qwen3_moe": "Qwen3MoeConfig", "gemma": "GemmaConfig", "gemma2": "Gemma2Config",
                "gemma3_text": "Gemma3TextConfig", "phi3": "Phi3Config", "smollm3": "SmolLM3Config",
                "olmo2": "Olmo2Config", "granite": "GraniteConfig", "deepseek_v2": "DeepseekV2Config",
                "deepseek_v3": "DeepseekV3Config", "gpt2": "GPT2Config", "opt": "OPTConfig",
                "falcon": "FalconConfig"}
assert set(_CLASS_NAMES) == set(TRANSFORMERS_DEFAULTS), set(_CLASS_NAMES) ^ set(TRANSFORMERS_DEFAULTS)

_DIMENSIONS = units.MAX_DIM
_BOUNDS = {"num_hidden_layers": units.MAX_LAYERS, "n_layer": units.MAX_LAYERS,
           "max_position_embeddings": units.MAX_CONTEXT_TOKENS, "n_positions": units.MAX_CONTEXT_TOKENS,
           "sliding_window": units.MAX_CONTEXT_TOKENS}
"""Upper bounds by field; heads and experts (``MAX_HEADS``) are passed by the builders, the rest are
tensor dimensions (``MAX_DIM``)."""
_WHY = {"num_hidden_layers": "no real model has that many blocks (Llama 3.1 405B has 126)",
        "n_layer": "no real model has that many blocks (Llama 3.1 405B has 126)",
        "max_position_embeddings": "no model has a context that long",
        "num_experts_per_tok": "it cannot be more than the experts"}


class ConfigReader:
    """Typed, bounded access to one ``config.json`` dict of a known ``model_type``; ``assumed`` collects a
    note for every field that took transformers' default.

    ``r = ConfigReader({"model_type": "mixtral", ...}, "mixtral"); r.count("num_local_experts")`` -> 8 and
    ``r.assumed == ["num_local_experts missing: 8 assumed (transformers MixtralConfig default)"]``.
    """

    def __init__(self, config: dict, model_type: str) -> None:
        self.config = config
        self.model_type = model_type
        self.defaults = TRANSFORMERS_DEFAULTS.get(model_type, {})
        self.assumed: list[str] = []

    def _find(self, keys: tuple[str, ...]) -> tuple[str, bool, Any]:
        """(the key found or the first one, present?, value)."""
        for key in keys:
            if key in self.config:
                return key, True, self.config[key]
        return keys[0], False, None

    def _default(self, key: str, derived: Callable[[], int] | None) -> int:
        if derived is not None and self.defaults.get(key) is None:
            return derived()
        if key not in self.defaults:
            raise ValueError(f"config.json lacks {key}; it is needed to size the model")
        value = self.defaults[key]
        if value is None:
            raise ValueError(
                f"config.json lacks {key}, and transformers' {_CLASS_NAMES[self.model_type]} has no default "
                "for it; give it in the config"
            )
        self.assumed.append(
            f"{key} missing: {value:,} assumed (transformers {_CLASS_NAMES[self.model_type]} default)"
        )
        return value

    def count(
        self, *keys: str, low: int = 1, high: int | None = None, derived: Callable[[], int] | None = None
    ) -> int:
        """A whole-number field (first of ``keys`` present) in ``[low, high]``; missing or ``null``: the
        value ``derived()`` from other fields where transformers derives it, else the class default."""
        key, present, value = self._find(keys)
        if not present or value is None:
            if present and derived is None and self.defaults.get(key) is not None:
                raise ValueError(f"config.json field {key} is null; give a whole number")
            value = self._default(key, derived)
        return self._checked(key, value, low, high)

    def optional(self, *keys: str, low: int = 1, high: int | None = None) -> int | None:
        """A field where ``null`` (or 0, for a window) means "none": ``sliding_window``, ``q_lora_rank``."""
        key, present, value = self._find(keys)
        if not present:
            value = self._default(key, None) if self.defaults.get(key) else None
        if value is None or value == 0 and not isinstance(value, bool):
            return None
        return self._checked(key, value, low, high)

    def _checked(self, key: str, value: object, low: int, high: int | None) -> int:
        units.check_int(f"config.json field {key}", value, low=low)
        bound = high if high is not None else _BOUNDS.get(key, _DIMENSIONS)
        if value > bound:
            raise ValueError(f"config.json field {key} {units.shown(value)} is above {bound:,}: "
                             f"{_WHY.get(key, 'no real model is that large')}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        """A true/false field (``null`` or missing: ``default``); a string such as "false" is refused."""
        value = self.config.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ValueError(f"config.json field {key} {units.shown(value)} must be true or false")
        return value

    def int_list(self, key: str, high: int) -> tuple[int, ...]:
        """A list of whole numbers in ``[0, high)`` (``mlp_only_layers``); missing or null: empty."""
        value = self.config.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or len(value) > units.MAX_LAYERS:
            raise ValueError(f"config.json field {key} must be a list of layer indices, got {units.shown(value)}")
        return tuple(units.check_int(f"config.json field {key}[{i}]", v, low=0, high=high - 1)
                     for i, v in enumerate(value))

    def str_list(self, key: str, length: int) -> tuple[str, ...] | None:
        """A list of ``length`` strings (``layer_types``: one per layer); missing or null: None."""
        value = self.config.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"config.json field {key} must be a list of strings, got {units.shown(value)}")
        if len(value) != length:
            raise ValueError(f"config.json field {key} lists {len(value):,} layers but num_hidden_layers is {length}")
        return tuple(value)


def check_heads(n_heads: int, n_kv: int, kv_field: str = "num_key_value_heads") -> None:
    """Grouped-query attention shares each KV head among ``n_heads / n_kv`` query heads, so ``n_kv`` must
    divide ``n_heads`` (transformers' ``repeat_kv`` reshapes by that ratio)."""
    if n_heads % n_kv:
        raise ValueError(
            f"config.json field {kv_field} {n_kv} does not divide num_attention_heads {n_heads}: grouped-query "
            "attention needs a whole number of query heads per KV head"
        )


def head_size(hidden: int, n_heads: int, fields: tuple[str, str] = ("hidden_size", "num_attention_heads")) -> int:
    """``hidden_size / num_attention_heads`` where no ``head_dim`` is given; refused unless it divides
    (``fields``: the two fields' names in this family's config, e.g. GPT-2's ``n_embd`` and ``n_head``)."""
    if hidden % n_heads:
        raise ValueError(
            f"config.json field {fields[0]} {hidden} is not a multiple of {fields[1]} {n_heads}: the heads "
            "must split it evenly"
        )
    return hidden // n_heads
