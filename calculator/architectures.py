"""One tensor-list builder per architecture family: a Hugging Face ``config.json`` -> a ``ModelSpec``.

``build_spec`` (called as ``calculator.models.spec_from_config``) dispatches on ``model_type``; each builder
lays out the tensors a checkpoint of that family stores, under llama.cpp's GGUF names and with PyTorch
``(out_features, in_features)`` shapes. Adding a family is one builder here plus its ``model_type`` in
``SUPPORTED_ARCHS``; a preset in ``assets/presets`` with the official parameter count makes the tests
check it (``tests/calculator/test_models.py``).

Sources for the layouts: transformers ``modeling_{llama,mistral,mixtral,qwen2,qwen2_moe,qwen3,gemma,
gemma2,gemma3,phi3,gpt2,opt,falcon,deepseek_v2,deepseek_v3}.py``; DeepSeek-V2 (arXiv 2405.04434 §2.1)
for multi-head latent attention.
"""

from __future__ import annotations

from calculator.models import ModelSpec, TensorSpec
from calculator.units import check_int


def _get(config: dict, *keys: str, default=None):
    for key in keys:
        if key in config and config[key] is not None:
            return config[key]
    return default


def _positive_int(config: dict, *keys: str, default=None) -> int:
    value = _get(config, *keys, default=default)
    if value is None:
        raise ValueError(f"config.json lacks {' / '.join(keys)}; it is needed to size the model")
    return check_int(f"config.json field {keys[0]}", value)


class _Builder:
    """Collects tensors in GGUF order."""

    def __init__(self) -> None:
        self.tensors: list[TensorSpec] = []

    def add(self, name: str, *shape: int, layer: int | None = None, bias: bool = False) -> None:
        prefix = f"blk.{layer}." if layer is not None else ""
        self.tensors.append(TensorSpec(f"{prefix}{name}.weight", tuple(shape), layer))
        if bias:
            self.tensors.append(TensorSpec(f"{prefix}{name}.bias", (shape[0],), layer))

    def norm(self, name: str, dim: int, layer: int | None = None, bias: bool = False) -> None:
        prefix = f"blk.{layer}." if layer is not None else ""
        self.tensors.append(TensorSpec(f"{prefix}{name}.weight", (dim,), layer))
        if bias:
            self.tensors.append(TensorSpec(f"{prefix}{name}.bias", (dim,), layer))


_LLAMA_LIKE = {
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2",
    "gemma3_text", "phi3", "smollm3", "olmo2", "granite",
}
_DEEPSEEK = {"deepseek_v2", "deepseek_v3"}
SUPPORTED_ARCHS = sorted(_LLAMA_LIKE | _DEEPSEEK | {"gpt2", "opt", "falcon", "gemma3"})


def build_spec(config: dict, name: str = "", source: str = "") -> ModelSpec:
    """A ModelSpec from a Hugging Face ``config.json`` dict (``models.spec_from_config``; see SUPPORTED_ARCHS)."""
    if not isinstance(config, dict):
        raise ValueError(f"config must be a JSON object (dict), got {type(config).__name__}")
    model_type = config.get("model_type")
    if model_type == "gemma3" and isinstance(config.get("text_config"), dict):
        # Multimodal Gemma 3 wraps the language model; size its text part.
        config = {**config["text_config"], "model_type": "gemma3_text"}
        model_type = "gemma3_text"
    if model_type is None:
        raise ValueError("config.json has no model_type; is it a transformers config.json?")
    if model_type in _LLAMA_LIKE:
        return _llama_like(config, name, source)
    if model_type in _DEEPSEEK:
        return _llama_like(config, name, source)
    builders = {"gpt2": _gpt2, "opt": _opt, "falcon": _falcon}
    if model_type not in builders:
        raise ValueError(
            f"model_type {model_type!r} is not supported; supported: {', '.join(SUPPORTED_ARCHS)}"
        )
    return builders[model_type](config, name, source)


def _layer_types(config: dict, n_layers: int, model_type: str) -> tuple[tuple[str, ...], int | None]:
    """Per-layer attention kind and the sliding window (transformers' ``layer_types`` convention)."""
    window = _get(config, "sliding_window")
    explicit = config.get("layer_types")
    if explicit:
        kinds = tuple("sliding" if "sliding" in str(k) else "full" for k in explicit)
        return (kinds if window else tuple("full" for _ in kinds)), window
    if not window or config.get("use_sliding_window") is False:
        return tuple("full" for _ in range(n_layers)), None
    if model_type == "gemma2":  # modeling_gemma2: even layers slide, odd layers are global
        return tuple("sliding" if i % 2 == 0 else "full" for i in range(n_layers)), window
    if model_type == "gemma3_text":  # every sliding_window_pattern-th layer is global (default 6)
        pattern = _get(config, "sliding_window_pattern", default=6)
        return tuple("full" if (i + 1) % pattern == 0 else "sliding" for i in range(n_layers)), window
    if model_type in ("mistral", "mixtral", "phi3"):
        return tuple("sliding" for _ in range(n_layers)), window
    return tuple("full" for _ in range(n_layers)), None


def _llama_like(c: dict, name: str, source: str) -> ModelSpec:
    mt = c["model_type"]
    hidden = _positive_int(c, "hidden_size")
    n_layers = _positive_int(c, "num_hidden_layers")
    n_heads = _positive_int(c, "num_attention_heads")
    n_kv = _positive_int(c, "num_key_value_heads", default=n_heads)
    head_dim = _positive_int(c, "head_dim", default=hidden // n_heads)
    vocab = _positive_int(c, "vocab_size")
    inter = _positive_int(c, "intermediate_size")
    gemma = mt.startswith("gemma")
    tied = bool(c.get("tie_word_embeddings", gemma or mt == "smollm3"))
    qkv_bias = bool(c.get("attention_bias", mt in ("qwen2", "qwen2_moe")) or c.get("qkv_bias", False))
    o_bias = bool(c.get("attention_bias", False)) and mt not in ("qwen2", "qwen2_moe")
    mlp_bias = bool(c.get("mlp_bias", False))
    qk_norm = mt in ("qwen3", "qwen3_moe", "gemma3_text", "olmo2")
    deepseek = mt in _DEEPSEEK

    n_experts = _get(c, "num_local_experts", "num_experts", "n_routed_experts", default=0) or 0
    n_used = _get(c, "num_experts_per_tok", default=0) or 0
    moe_inter = _get(c, "moe_intermediate_size", default=inter if n_experts else 0)
    shared_inter = _get(c, "shared_expert_intermediate_size", default=0) or 0
    n_shared = _get(c, "n_shared_experts", default=1 if shared_inter else 0) or 0
    if deepseek and n_shared:
        shared_inter = moe_inter * n_shared
    first_dense = _get(c, "first_k_dense_replace", default=0)
    mlp_only = set(c.get("mlp_only_layers") or [])
    sparse_step = _get(c, "decoder_sparse_step", "moe_layer_freq", default=1)

    kv_lora = _get(c, "kv_lora_rank", default=0) or 0 if deepseek else 0
    q_lora = _get(c, "q_lora_rank", default=0) or 0
    rope_dim = _get(c, "qk_rope_head_dim", default=0) if deepseek else 0
    nope_dim = _get(c, "qk_nope_head_dim", default=0) if deepseek else 0
    v_dim = _get(c, "v_head_dim", default=head_dim) if deepseek else head_dim

    b = _Builder()
    b.add("token_embd", vocab, hidden)
    for i in range(n_layers):
        b.norm("attn_norm", hidden, i)
        if deepseek:
            q_dim = n_heads * (nope_dim + rope_dim)
            if q_lora:
                b.add("attn_q_a", q_lora, hidden, layer=i)
                b.norm("attn_q_a_norm", q_lora, i)
                b.add("attn_q_b", q_dim, q_lora, layer=i)
            else:
                b.add("attn_q", q_dim, hidden, layer=i)
            b.add("attn_kv_a_mqa", kv_lora + rope_dim, hidden, layer=i)
            b.norm("attn_kv_a_norm", kv_lora, i)
            b.add("attn_kv_b", n_heads * (nope_dim + v_dim), kv_lora, layer=i)
            b.add("attn_output", hidden, n_heads * v_dim, layer=i)
        elif mt == "phi3":
            b.add("attn_qkv", (n_heads + 2 * n_kv) * head_dim, hidden, layer=i)
            b.add("attn_output", hidden, n_heads * head_dim, layer=i)
        else:
            b.add("attn_q", n_heads * head_dim, hidden, layer=i, bias=qkv_bias)
            b.add("attn_k", n_kv * head_dim, hidden, layer=i, bias=qkv_bias)
            b.add("attn_v", n_kv * head_dim, hidden, layer=i, bias=qkv_bias)
            b.add("attn_output", hidden, n_heads * head_dim, layer=i, bias=o_bias)
        if qk_norm:
            b.norm("attn_q_norm", head_dim, i)
            b.norm("attn_k_norm", head_dim, i)
        if mt in ("gemma2", "gemma3_text"):
            b.norm("post_attention_norm", hidden, i)
        b.norm("ffn_norm", hidden, i)
        is_moe = bool(n_experts) and i >= first_dense and i not in mlp_only and (i + 1) % sparse_step == 0
        if is_moe:
            b.add("ffn_gate_inp", n_experts, hidden, layer=i)
            if mt == "deepseek_v3":
                b.tensors.append(TensorSpec(f"blk.{i}.exp_probs_b.bias", (n_experts,), i))
            b.add("ffn_gate_exps", n_experts, moe_inter, hidden, layer=i)
            b.add("ffn_up_exps", n_experts, moe_inter, hidden, layer=i)
            b.add("ffn_down_exps", n_experts, hidden, moe_inter, layer=i)
            if shared_inter:
                if mt == "qwen2_moe":
                    b.add("ffn_gate_inp_shexp", 1, hidden, layer=i)
                b.add("ffn_gate_shexp", shared_inter, hidden, layer=i)
                b.add("ffn_up_shexp", shared_inter, hidden, layer=i)
                b.add("ffn_down_shexp", hidden, shared_inter, layer=i)
        elif mt == "phi3":
            b.add("ffn_up", 2 * inter, hidden, layer=i)  # fused gate_up_proj
            b.add("ffn_down", hidden, inter, layer=i)
        else:
            b.add("ffn_gate", inter, hidden, layer=i, bias=mlp_bias)
            b.add("ffn_up", inter, hidden, layer=i, bias=mlp_bias)
            b.add("ffn_down", hidden, inter, layer=i, bias=mlp_bias)
        if mt in ("gemma2", "gemma3_text"):
            b.norm("post_ffw_norm", hidden, i)
    b.norm("output_norm", hidden)
    if not tied:
        b.add("output", vocab, hidden)
    layer_types, window = _layer_types(c, n_layers, mt)
    return ModelSpec(
        name=name or c.get("_name_or_path", "") or mt,
        arch=mt,
        hidden_size=hidden,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=n_heads if deepseek else n_kv,
        head_dim=(nope_dim + rope_dim) if deepseek else head_dim,
        intermediate_size=inter,
        vocab_size=vocab,
        max_context=_positive_int(c, "max_position_embeddings", default=2048),
        tie_word_embeddings=tied,
        tensors=tuple(b.tensors),
        n_experts=n_experts,
        n_experts_used=n_used,
        n_shared_experts=n_shared,
        moe_intermediate_size=moe_inter if n_experts else 0,
        kv_lora_rank=kv_lora,
        qk_rope_head_dim=rope_dim,
        v_head_dim=v_dim,
        sliding_window=window,
        layer_types=layer_types,
        source=source,
        config=c,
    )


def _gpt2(c: dict, name: str, source: str) -> ModelSpec:
    """GPT-2 (modeling_gpt2): learned positions, fused c_attn, biases everywhere, tied lm_head."""
    hidden = _positive_int(c, "n_embd", "hidden_size")
    n_layers = _positive_int(c, "n_layer", "num_hidden_layers")
    n_heads = _positive_int(c, "n_head", "num_attention_heads")
    vocab = _positive_int(c, "vocab_size")
    n_pos = _positive_int(c, "n_positions", "max_position_embeddings")
    inter = _positive_int(c, "n_inner", default=4 * hidden)
    b = _Builder()
    b.add("token_embd", vocab, hidden)
    b.add("position_embd", n_pos, hidden)
    for i in range(n_layers):
        b.norm("attn_norm", hidden, i, bias=True)
        b.add("attn_qkv", 3 * hidden, hidden, layer=i, bias=True)
        b.add("attn_output", hidden, hidden, layer=i, bias=True)
        b.norm("ffn_norm", hidden, i, bias=True)
        b.add("ffn_up", inter, hidden, layer=i, bias=True)
        b.add("ffn_down", hidden, inter, layer=i, bias=True)
    b.norm("output_norm", hidden, bias=True)
    return ModelSpec(name or "gpt2", "gpt2", hidden, n_layers, n_heads, n_heads, hidden // n_heads, inter,
                     vocab, n_pos, True, tuple(b.tensors), layer_types=("full",) * n_layers,
                     source=source, config=c)


def _opt(c: dict, name: str, source: str) -> ModelSpec:
    """OPT (modeling_opt): learned positions with offset 2, biases, optional project_in/out, tied head."""
    hidden = _positive_int(c, "hidden_size")
    n_layers = _positive_int(c, "num_hidden_layers")
    n_heads = _positive_int(c, "num_attention_heads")
    vocab = _positive_int(c, "vocab_size")
    ffn = _positive_int(c, "ffn_dim")
    n_pos = _positive_int(c, "max_position_embeddings")
    proj = _get(c, "word_embed_proj_dim", default=hidden)
    bias = bool(c.get("enable_bias", True))
    b = _Builder()
    b.add("token_embd", vocab, proj)
    b.add("position_embd", n_pos + 2, hidden)  # OPTLearnedPositionalEmbedding offset = 2
    if proj != hidden:
        b.add("project_in", hidden, proj)
        b.add("project_out", proj, hidden)
    for i in range(n_layers):
        b.norm("attn_norm", hidden, i, bias=True)
        for role in ("attn_q", "attn_k", "attn_v", "attn_output"):
            b.add(role, hidden, hidden, layer=i, bias=bias)
        b.norm("ffn_norm", hidden, i, bias=True)
        b.add("ffn_up", ffn, hidden, layer=i, bias=bias)
        b.add("ffn_down", hidden, ffn, layer=i, bias=bias)
    if c.get("do_layer_norm_before", True) and not c.get("_remove_final_layer_norm", False):
        b.norm("output_norm", hidden, bias=True)
    tied = bool(c.get("tie_word_embeddings", True))
    if not tied:
        b.add("output", vocab, proj)
    return ModelSpec(name or "opt", "opt", hidden, n_layers, n_heads, n_heads, hidden // n_heads, ffn,
                     vocab, n_pos, tied, tuple(b.tensors), layer_types=("full",) * n_layers,
                     source=source, config=c)


def _falcon(c: dict, name: str, source: str) -> ModelSpec:
    """Falcon (modeling_falcon): fused QKV with multi-query or grouped KV heads, tied head."""
    hidden = _positive_int(c, "hidden_size")
    n_layers = _positive_int(c, "num_hidden_layers", "n_layer")
    n_heads = _positive_int(c, "num_attention_heads", "n_head")
    vocab = _positive_int(c, "vocab_size")
    new_arch = bool(c.get("new_decoder_architecture", False))
    if new_arch:
        n_kv = _positive_int(c, "num_kv_heads", default=n_heads)
    else:
        n_kv = 1 if c.get("multi_query", True) else n_heads
    head_dim = hidden // n_heads
    inter = _positive_int(c, "ffn_hidden_size", default=4 * hidden)
    bias = bool(c.get("bias", False))
    b = _Builder()
    b.add("token_embd", vocab, hidden)
    for i in range(n_layers):
        b.norm("attn_norm", hidden, i, bias=True)
        if new_arch and c.get("num_ln_in_parallel_attn", 2) == 2:
            b.norm("attn_norm_2", hidden, i, bias=True)
        elif not c.get("parallel_attn", True):
            b.norm("ffn_norm", hidden, i, bias=True)
        b.add("attn_qkv", (n_heads + 2 * n_kv) * head_dim, hidden, layer=i, bias=bias)
        b.add("attn_output", hidden, hidden, layer=i, bias=bias)
        b.add("ffn_up", inter, hidden, layer=i, bias=bias)
        b.add("ffn_down", hidden, inter, layer=i, bias=bias)
    b.norm("output_norm", hidden, bias=True)
    tied = bool(c.get("tie_word_embeddings", True))
    if not tied:
        b.add("output", vocab, hidden)
    return ModelSpec(name or "falcon", "falcon", hidden, n_layers, n_heads, n_kv, head_dim, inter, vocab,
                     _positive_int(c, "max_position_embeddings", default=2048), tied, tuple(b.tensors),
                     layer_types=("full",) * n_layers, source=source, config=c)
