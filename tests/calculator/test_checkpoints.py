"""Quantized safetensors checkpoints on the (fake) Hub: safetensors files written here in the GPTQ, AWQ and
compressed-tensors FP8 layouts, with quantization_configs copied from public repos, read through the real
huggingface_hub client; stored bytes per tensor group against the calculator's prediction for the format.

Configs:
- GPTQ: TheBloke/TinyLlama-1.1B-Chat-v1.0-GPTQ ``quantize_config.json`` (main), as transformers writes it
  into ``config.json`` (plus ``quant_method``);
- AWQ: Qwen/Qwen3-4B-AWQ ``config.json`` ``quantization_config``;
- FP8: llm-compressor's ``FP8_DYNAMIC`` scheme as the RedHatAI ``*-FP8-dynamic`` repos carry it
  (per-channel FP8 weights, dynamic per-token activations, ``lm_head`` ignored);
- block FP8: deepseek-ai/DeepSeek-V3 ``config.json`` ``quantization_config``.

Layouts: AutoGPTQ ``QuantLinear`` (qweight int32 ``[in/8, out]``, qzeros int32 ``[in/g, out/8]``, scales fp16
``[in/g, out]``, g_idx int32 ``[in]``); AutoAWQ GEMM (qweight int32 ``[in, out/8]``, qzeros ``[in/g, out/8]``,
scales ``[in/g, out]``); compressed-tensors float-quantized (weight F8_E4M3 ``[out, in]``, weight_scale
BF16 ``[out, 1]``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from calculator.checkpoints import checkpoint_from_tensors, read_checkpoint, scheme_of
from calculator.fit import fit
from calculator.memory import weight_memory
from tests.hub_server import safetensors_header_only

H, FF, V, KV, LAYERS = 256, 768, 1000, 128, 2
BASE = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": H, "intermediate_size": FF,
        "num_hidden_layers": LAYERS, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": V,
        "max_position_embeddings": 2048, "tie_word_embeddings": False, "torch_dtype": "float16"}
LINEARS = {"self_attn.q_proj": (H, H), "self_attn.k_proj": (KV, H), "self_attn.v_proj": (KV, H),
           "self_attn.o_proj": (H, H), "mlp.gate_proj": (FF, H), "mlp.up_proj": (FF, H), "mlp.down_proj": (H, FF)}
"""module -> (out_features, in_features)."""

GPTQ_CONFIG = {"bits": 4, "group_size": 128, "damp_percent": 0.1, "desc_act": True, "static_groups": False,
               "sym": True, "true_sequential": True, "model_name_or_path": None, "model_file_base_name": "model",
               "quant_method": "gptq"}
AWQ_CONFIG = {"bits": 4, "group_size": 128, "modules_to_not_convert": None, "quant_method": "awq",
              "version": "gemm", "zero_point": True}
FP8_CONFIG = {
    "config_groups": {"group_0": {
        "input_activations": {"actorder": None, "block_structure": None, "dynamic": True, "group_size": None,
                              "num_bits": 8, "observer": None, "observer_kwargs": {}, "strategy": "token",
                              "symmetric": True, "type": "float"},
        "output_activations": None,
        "targets": ["Linear"],
        "weights": {"actorder": None, "block_structure": None, "dynamic": False, "group_size": None,
                    "num_bits": 8, "observer": "minmax", "observer_kwargs": {}, "strategy": "channel",
                    "symmetric": True, "type": "float"},
    }},
    "format": "float-quantized", "global_compression_ratio": None, "ignore": ["lm_head"], "kv_cache_scheme": None,
    "quant_method": "compressed-tensors", "quantization_status": "compressed",
}
DEEPSEEK_FP8 = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": [128, 128]}


def _layout(kind: str) -> dict[str, tuple[str, list[int]]]:
    """Tensor name -> (dtype, shape) as each quantizer saves the tiny llama."""
    float_dtype = "BF16" if kind == "fp8" else "F16"
    out = {"model.embed_tokens.weight": (float_dtype, [V, H]), "lm_head.weight": (float_dtype, [V, H]),
           "model.norm.weight": (float_dtype, [H])}
    for n in range(LAYERS):
        p = f"model.layers.{n}."
        out |= {p + "input_layernorm.weight": (float_dtype, [H]),
                p + "post_attention_layernorm.weight": (float_dtype, [H])}
        for module, (o, i) in LINEARS.items():
            m = p + module
            if kind == "gptq":
                out |= {m + ".qweight": ("I32", [i // 8, o]), m + ".qzeros": ("I32", [i // 128, o // 8]),
                        m + ".scales": ("F16", [i // 128, o]), m + ".g_idx": ("I32", [i])}
            elif kind == "awq":
                out |= {m + ".qweight": ("I32", [i, o // 8]), m + ".qzeros": ("I32", [i // 128, o // 8]),
                        m + ".scales": ("F16", [i // 128, o])}
            else:
                out |= {m + ".weight": ("F8_E4M3", [o, i]), m + ".weight_scale": ("BF16", [o, 1])}
    return out


def _bytes(layout: dict[str, tuple[str, list[int]]]) -> int:
    size = {"F16": 2, "BF16": 2, "I32": 4, "F8_E4M3": 1}
    return sum(size[d] * math.prod(s) for d, s in layout.values())


@pytest.fixture
def quant_hub(fake_hub):
    for kind, qc in (("gptq", GPTQ_CONFIG), ("awq", AWQ_CONFIG), ("fp8", FP8_CONFIG)):
        layout = _layout(kind)
        files = {"config.json": json.dumps({**BASE, "quantization_config": qc}).encode()}
        if kind == "fp8":  # two shards, as large checkpoints are split
            names = sorted(layout)
            files["model-00001-of-00002.safetensors"] = safetensors_header_only({n: layout[n] for n in names[:20]})
            files["model-00002-of-00002.safetensors"] = safetensors_header_only({n: layout[n] for n in names[20:]})
        else:
            files["model.safetensors"] = safetensors_header_only(layout)
        fake_hub.repos[f"acme/tiny-{kind.upper()}"] = files
    return fake_hub


@pytest.mark.parametrize(
    ("repo", "kind", "fmt", "delta"),
    [
        ("acme/tiny-GPTQ", "gptq", "gptq-4b-g128-actorder", 0),
        ("acme/tiny-AWQ", "awq", "awq-4b-g128", 0),
        # per-channel scales: one bf16 per output row of every quantized Linear, which fp8_e4m3 does not count
        ("acme/tiny-FP8", "fp8", "fp8_e4m3", 2 * LAYERS * sum(o for o, _ in LINEARS.values())),
    ],
)
def test_stored_bytes_beside_the_prediction(quant_hub, repo, kind, fmt, delta):
    ckpt = read_checkpoint(repo)
    assert ckpt.stored_bytes == _bytes(_layout(kind))
    assert ckpt.stored_format == fmt
    assert ckpt.comparison.delta_bytes == delta == ckpt.stored_bytes - ckpt.predicted.total_bytes
    assert ckpt.comparison.tensors_compared == len(ckpt.spec.tensors) and not ckpt.to_dict()["unmapped_tensors"]
    # every stored tensor lands in a spec tensor's group; quantized groups hold 3-4 stored tensors
    assert {g.name for g in ckpt.groups} == {t.name for t in ckpt.spec.tensors}
    q = next(g for g in ckpt.groups if g.name == "blk.0.attn_q.weight")
    assert len(q.stored_tensors) == {"gptq": 4, "awq": 3, "fp8": 2}[kind]
    if delta:
        assert {d.name for d in ckpt.comparison.differences} == {
            f"blk.{n}.{r}.weight" for n in range(LAYERS)
            for r in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")}
    # the parameter count is the model's, not the packed int32 elements the headers count
    assert ckpt.spec.total_params == 2 * V * H + H + LAYERS * (2 * H + sum(o * i for o, i in LINEARS.values()))
    # a fit of the checkpoint as stored
    assert fit(ckpt.spec, ckpt.stored, "RTX 4090").weight_bytes == ckpt.stored_bytes


def test_cli_info_gives_stored_bytes_and_format(quant_hub):
    env = {**os.environ, "HF_ENDPOINT": quant_hub.endpoint}
    out = subprocess.run([sys.executable, "-m", "calculator", "info", "--model", "acme/tiny-GPTQ", "--json"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["stored_bytes"] == _bytes(_layout("gptq")) == data["predicted_bytes"]
    assert data["stored_format"] == "gptq-4b-g128-actorder"
    assert data["quantization"] == {"method": "gptq", "bits": "4", "group_size": 128, "act_order": True, "note": ""}
    assert data["checkpoint_parameter_count"]["I32"] < data["params"]  # packed: what naive tools report
    plain = json.loads(subprocess.run([sys.executable, "-m", "calculator", "info", "--model", "acme/tiny-llama",
                                       "--json"], capture_output=True, text=True, env=env, timeout=60).stdout)
    assert (plain["stored_format"], plain["stored_bytes"]) == ("bf16", 2 * plain["params"])
    assert plain["predicted_bytes"] == plain["stored_bytes"]


@pytest.mark.parametrize(
    ("qc", "fmt", "method"),
    [
        (GPTQ_CONFIG, "gptq-4b-g128-actorder", "gptq"),
        ({**GPTQ_CONFIG, "desc_act": False, "bits": 8, "group_size": 32}, "gptq-8b-g32", "gptq"),
        ({**GPTQ_CONFIG, "group_size": -1}, None, "gptq"),
        (AWQ_CONFIG, "awq-4b-g128", "awq"),
        ({**AWQ_CONFIG, "version": "gemv"}, None, "awq"),
        (FP8_CONFIG, "fp8_e4m3", "compressed-tensors"),
        (DEEPSEEK_FP8, "fp8_e4m3", "fp8"),
        ({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
          "bnb_4bit_use_double_quant": True}, "nf4-dq", "bitsandbytes"),
        ({"quant_method": "bitsandbytes", "load_in_8bit": True}, None, "bitsandbytes"),
        ({"quant_method": "exl2", "bits": 4.65}, "exl2-4.65", "exl2"),
        ({"quant_method": "hqq", "nbits": 4, "group_size": 64}, None, "hqq"),
        ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": {
            "num_bits": 4, "type": "int", "strategy": "group", "group_size": 128, "symmetric": True}}}},
         "int4-g128", "compressed-tensors"),
        ({"quant_method": "marlin-2"}, None, "marlin-2"),
    ],
)
def test_quantization_configs_map_to_formats(qc, fmt, method):
    scheme = scheme_of({"quantization_config": qc}, {})
    assert (scheme.format, scheme.method) == (fmt, method)
    assert fmt is None or weight_memory(int(7e9), fmt).total_bytes > 0


@pytest.mark.parametrize(
    ("qc", "message"),
    [
        ({"quant_method": "gptq", "bits": "four", "group_size": 128}, "quantization_config bits .gptq. 'four'"),
        ({"quant_method": "gptq", "bits": 40, "group_size": 128}, "bits .gptq. 40 must be a whole number from 1 to 16"),
        ({"quant_method": "awq", "bits": 4, "group_size": 2.5}, "group_size .awq. 2.5 must be a whole number"),
        ({"quant_method": "compressed-tensors"}, "has no config_groups"),
        ([1, 2], "quantization_config must be an object, got list"),
    ],
)
def test_malformed_quantization_configs_are_named(qc, message):
    with pytest.raises(ValueError, match=message):
        scheme_of({"quantization_config": qc}, {})


def test_unmapped_tensors_are_kept_and_named():
    from calculator.hub import SafetensorsTensor
    from calculator.models import spec_from_config

    spec = spec_from_config(BASE)
    tensors = {n: SafetensorsTensor(d, tuple(s), 2 * math.prod(s)) for n, (d, s) in _layout("awq").items()}
    tensors["model.layers.0.self_attn.rotary_emb.inv_freq"] = SafetensorsTensor("F32", (32,), 128)
    ckpt = checkpoint_from_tensors(spec, {"quantization_config": AWQ_CONFIG}, tensors, "acme/x")
    assert ckpt.to_dict()["unmapped_tensors"] == ["model.layers.0.self_attn.rotary_emb.inv_freq"]
    assert ckpt.stored is None  # a fit needs every stored byte placed
    with pytest.raises(ValueError, match="acme/y has no safetensors tensors"):
        checkpoint_from_tensors(spec, {}, {}, "acme/y")


def test_repo_without_safetensors(fake_hub):
    fake_hub.repos["acme/config-only"] = {"config.json": json.dumps(BASE).encode()}
    with pytest.raises(ValueError, match="acme/config-only has no .safetensors files"):
        read_checkpoint("acme/config-only")
