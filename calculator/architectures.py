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

from calculator.config_fields import ConfigReader, check_heads, head_size
from calculator.models import ModelSpec, TensorSpec
from calculator.units import MAX_HEADS, MAX_LAYERS, MAX_PARAMS


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
    """A ModelSpec from a Hugging Face ``config.json`` dict (``models.spec_from_config``; see SUPPORTED_ARCHS).

    Fields are read through ``calculator.config_fields.ConfigReader``: checked and bounded, missing ones
    given transformers' defaults (listed in ``ModelSpec.assumed``); impossible combinations are refused
    with the field named.
    """
    if not isinstance(config, dict):
        raise ValueError(f"config must be a JSON object (dict), got {type(config).__name__}")
    model_type = config.get("model_type")
    if model_type == "gemma3":
        # Multimodal Gemma 3 wraps the language model; size its text part.
        if not isinstance(config.get("text_config"), dict):
            raise ValueError("gemma3 config.json has no text_config object (the language model's fields)")
        config = {**config["text_config"], "model_type": "gemma3_text"}
        model_type = "gemma3_text"
    if model_type is None:
        raise ValueError("config.json has no model_type; is it a transformers config.json?")
    if not isinstance(model_type, str):
        raise ValueError(f"config.json field model_type {model_type!r:.40} must be a string such as 'llama'")
    builders = {"gpt2": _gpt2, "opt": _opt, "falcon": _falcon}
    if model_type in _LLAMA_LIKE or model_type in _DEEPSEEK:
        builder = _llama_like
    elif model_type in builders:
        builder = builders[model_type]
    else:
        raise ValueError(
            f"model_type {model_type[:40]!r} is not supported; supported: {', '.join(SUPPORTED_ARCHS)}"
        )
    reader = ConfigReader(config, model_type)
    spec = builder(reader, name or _config_name(config) or model_type, source)
    if spec.total_params > MAX_PARAMS:
        raise ValueError(
            f"config.json describes {spec.total_params:.3g} parameters, above {MAX_PARAMS:.0e}: check "
            "hidden_size, intermediate_size, vocab_size and the expert counts"
        )
    return spec


def _config_name(config: dict) -> str:
    value = config.get("_name_or_path")
    return value[:200] if isinstance(value, str) else ""


def _layer_types(r: ConfigReader, n_layers: int) -> tuple[tuple[str, ...], int | None]:
    """Per-layer attention kind and the sliding window (transformers' ``layer_types`` convention)."""
    mt = r.model_type
    window = r.optional("sliding_window")
    explicit = r.str_list("layer_types", n_layers)
    if explicit:
        kinds = tuple("sliding" if "sliding" in k else "full" for k in explicit)
        return (kinds if window else tuple("full" for _ in kinds)), window
    if not window or not r.flag("use_sliding_window", True):
        return tuple("full" for _ in range(n_layers)), None
    if mt == "gemma2":  # modeling_gemma2: even layers slide, odd layers are global
        return tuple("sliding" if i % 2 == 0 else "full" for i in range(n_layers)), window
    if mt == "gemma3_text":  # every sliding_window_pattern-th layer is global (default 6)
        pattern = r.count("sliding_window_pattern", high=MAX_LAYERS, derived=lambda: 6)
        return tuple("full" if (i + 1) % pattern == 0 else "sliding" for i in range(n_layers)), window
    if mt in ("mistral", "mixtral", "phi3"):
        return tuple("sliding" for _ in range(n_layers)), window
    return tuple("full" for _ in range(n_layers)), None


_EXPERT_KEYS = {"mixtral": ("num_local_experts", "num_experts"), "qwen2_moe": ("num_experts", "num_local_experts"),
                "qwen3_moe": ("num_experts", "num_local_experts"),
                "deepseek_v2": ("n_routed_experts", "num_local_experts"),
                "deepseek_v3": ("n_routed_experts", "num_local_experts")}
"""Where each mixture-of-experts family keeps its expert count (dense families have none)."""


def _experts(r: ConfigReader, n_layers: int, inter: int) -> dict:
    """The MoE fields of a llama-like family: expert counts, sizes and which layers route."""
    mt = r.model_type
    if mt not in _EXPERT_KEYS:
        return {"n": 0, "used": 0, "inter": 0, "shared_inter": 0, "n_shared": 0, "first_dense": 0,
                "mlp_only": frozenset(), "step": 1}
    key = _EXPERT_KEYS[mt][0]
    n = r.count(*_EXPERT_KEYS[mt], high=MAX_HEADS)
    used = r.count("num_experts_per_tok", high=MAX_HEADS)
    if used > n:
        raise ValueError(f"config.json field num_experts_per_tok {used} is more than the {n} experts ({key})")
    moe_inter = r.count("moe_intermediate_size", derived=lambda: inter)
    shared_inter = n_shared = 0
    if mt == "qwen2_moe":
        shared_inter = r.optional("shared_expert_intermediate_size") or 0
        n_shared = 1 if shared_inter else 0
    elif mt in _DEEPSEEK:
        n_shared = r.optional("n_shared_experts", high=MAX_HEADS) or 0
        shared_inter = moe_inter * n_shared
    deepseek = mt in _DEEPSEEK
    return {
        "n": n, "used": used, "inter": moe_inter, "shared_inter": shared_inter, "n_shared": n_shared,
        "first_dense": r.count("first_k_dense_replace", low=0, high=n_layers) if deepseek else 0,
        "mlp_only": frozenset(r.int_list("mlp_only_layers", n_layers)),
        "step": r.count("moe_layer_freq" if deepseek else "decoder_sparse_step", high=MAX_LAYERS,
                        derived=lambda: 1),
    }


def _llama_like(r: ConfigReader, name: str, source: str) -> ModelSpec:
    mt = r.model_type
    deepseek = mt in _DEEPSEEK
    hidden = r.count("hidden_size")
    n_layers = r.count("num_hidden_layers")
    n_heads = r.count("num_attention_heads", high=MAX_HEADS)
    n_kv = r.count("num_key_value_heads", high=MAX_HEADS, derived=lambda: n_heads)
    if not deepseek:
        check_heads(n_heads, n_kv)
    head_dim = 0 if deepseek else r.count("head_dim", derived=lambda: head_size(hidden, n_heads))
    vocab = r.count("vocab_size")
    inter = r.count("intermediate_size")
    gemma = mt.startswith("gemma")
    tied = r.flag("tie_word_embeddings", gemma or mt == "smollm3")
    qkv_bias = r.flag("attention_bias", mt in ("qwen2", "qwen2_moe")) or r.flag("qkv_bias", False)
    o_bias = r.flag("attention_bias", False) and mt not in ("qwen2", "qwen2_moe")
    mlp_bias = r.flag("mlp_bias", False)
    qk_norm = mt in ("qwen3", "qwen3_moe", "gemma3_text", "olmo2")
    moe = _experts(r, n_layers, inter)
    n_experts, moe_inter, shared_inter = moe["n"], moe["inter"], moe["shared_inter"]

    kv_lora = q_lora = rope_dim = nope_dim = 0
    v_dim = head_dim
    if deepseek:
        kv_lora = r.count("kv_lora_rank")
        q_lora = r.optional("q_lora_rank") or 0
        rope_dim = r.count("qk_rope_head_dim")
        nope_dim = r.count("qk_nope_head_dim", low=0)
        v_dim = r.count("v_head_dim")

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
        is_moe = (bool(n_experts) and i >= moe["first_dense"] and i not in moe["mlp_only"]
                  and (i + 1) % moe["step"] == 0)
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
    layer_types, window = _layer_types(r, n_layers)
    return ModelSpec(
        name=name,
        arch=mt,
        hidden_size=hidden,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=n_heads if deepseek else n_kv,
        head_dim=(nope_dim + rope_dim) if deepseek else head_dim,
        intermediate_size=inter,
        vocab_size=vocab,
        max_context=r.count("max_position_embeddings"),
        tie_word_embeddings=tied,
        tensors=tuple(b.tensors),
        n_experts=n_experts,
        n_experts_used=moe["used"],
        n_shared_experts=moe["n_shared"],
        moe_intermediate_size=moe_inter if n_experts else 0,
        kv_lora_rank=kv_lora,
        qk_rope_head_dim=rope_dim,
        v_head_dim=v_dim,
        sliding_window=window,
        layer_types=layer_types,
        source=source,
        config=r.config,
        assumed=tuple(r.assumed),
    )


def _gpt2(r: ConfigReader, name: str, source: str) -> ModelSpec:
    """GPT-2 (modeling_gpt2): learned positions, fused c_attn, biases everywhere, tied lm_head."""
    hidden = r.count("n_embd", "hidden_size")
    n_layers = r.count("n_layer", "num_hidden_layers")
    n_heads = r.count("n_head", "num_attention_heads", high=MAX_HEADS)
    head_dim = head_size(hidden, n_heads, ("n_embd", "n_head"))
    vocab = r.count("vocab_size")
    n_pos = r.count("n_positions", "max_position_embeddings")
    inter = r.count("n_inner", derived=lambda: 4 * hidden)
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
    return ModelSpec(name, "gpt2", hidden, n_layers, n_heads, n_heads, head_dim, inter, vocab, n_pos, True,
                     tuple(b.tensors), layer_types=("full",) * n_layers, source=source, config=r.config,
                     assumed=tuple(r.assumed))


def _opt(r: ConfigReader, name: str, source: str) -> ModelSpec:
    """OPT (modeling_opt): learned positions with offset 2, biases, optional project_in/out, tied head."""
    hidden = r.count("hidden_size")
    n_layers = r.count("num_hidden_layers")
    n_heads = r.count("num_attention_heads", high=MAX_HEADS)
    head_dim = head_size(hidden, n_heads)
    vocab = r.count("vocab_size")
    ffn = r.count("ffn_dim")
    n_pos = r.count("max_position_embeddings")
    proj = r.count("word_embed_proj_dim", derived=lambda: hidden)
    bias = r.flag("enable_bias", True)
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
    if r.flag("do_layer_norm_before", True) and not r.flag("_remove_final_layer_norm", False):
        b.norm("output_norm", hidden, bias=True)
    tied = r.flag("tie_word_embeddings", True)
    if not tied:
        b.add("output", vocab, proj)
    return ModelSpec(name, "opt", hidden, n_layers, n_heads, n_heads, head_dim, ffn, vocab, n_pos, tied,
                     tuple(b.tensors), layer_types=("full",) * n_layers, source=source, config=r.config,
                     assumed=tuple(r.assumed))


def _falcon(r: ConfigReader, name: str, source: str) -> ModelSpec:
    """Falcon (modeling_falcon): fused QKV with multi-query or grouped KV heads, tied head."""
    hidden = r.count("hidden_size")
    n_layers = r.count("num_hidden_layers", "n_layer")
    n_heads = r.count("num_attention_heads", "n_head", high=MAX_HEADS)
    head_dim = head_size(hidden, n_heads)
    vocab = r.count("vocab_size")
    new_arch = r.flag("new_decoder_architecture", False)
    n_ln = 1
    if new_arch:
        n_kv = r.count("num_kv_heads", high=MAX_HEADS, derived=lambda: n_heads)
        check_heads(n_heads, n_kv, "num_kv_heads")
        n_ln = r.count("num_ln_in_parallel_attn", high=2, derived=lambda: 2)  # modeling_falcon: None -> 2
    else:
        n_kv = 1 if r.flag("multi_query", True) else n_heads
    inter = r.count("ffn_hidden_size", derived=lambda: 4 * hidden)
    bias = r.flag("bias", False)
    parallel = r.flag("parallel_attn", True)
    b = _Builder()
    b.add("token_embd", vocab, hidden)
    for i in range(n_layers):
        b.norm("attn_norm", hidden, i, bias=True)
        if new_arch and n_ln == 2:
            b.norm("attn_norm_2", hidden, i, bias=True)
        elif not parallel:
            b.norm("ffn_norm", hidden, i, bias=True)
        b.add("attn_qkv", (n_heads + 2 * n_kv) * head_dim, hidden, layer=i, bias=bias)
        b.add("attn_output", hidden, hidden, layer=i, bias=bias)
        b.add("ffn_up", inter, hidden, layer=i, bias=bias)
        b.add("ffn_down", hidden, inter, layer=i, bias=bias)
    b.norm("output_norm", hidden, bias=True)
    tied = r.flag("tie_word_embeddings", True)
    if not tied:
        b.add("output", vocab, hidden)
    return ModelSpec(name, "falcon", hidden, n_layers, n_heads, n_kv, head_dim, inter, vocab,
                     r.count("max_position_embeddings"), tied, tuple(b.tensors),
                     layer_types=("full",) * n_layers, source=source, config=r.config, assumed=tuple(r.assumed))
