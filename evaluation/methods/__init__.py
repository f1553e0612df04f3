"""Quantization methods: ``quantize_(model, config)`` with frozen configs, one family per module.

``base`` holds the protocol (``MethodConfig``, the registry, ``quantize_``, the id parser); ``primitives``
the tensor functions every family shares. Each family module below registers its configs when imported,
so adding a family is one new module plus one import line here. Measured size: ``evaluation.storage``.
"""

# One line per family: importing its module registers its configs (the listing order is MethodFamily's).
from evaluation.methods.awq import AWQConfig
from evaluation.methods.base import (
    BaselineConfig,
    MethodConfig,
    MethodFamily,
    available_methods,
    example_method_ids,
    method_config_dict,
    method_summary,
    nominal_bits,
    parse_method,
    parse_methods,
    quantize_,
    register_method,
    registered_configs,
)
from evaluation.methods.bnb import BnB4bitConfig, BnBQuantType
from evaluation.methods.gguf import GGUFBackend, GGUFConfig
from evaluation.methods.gptq import GPTQConfig
from evaluation.methods.kernels import Int4WeightOnlyConfig, Int8DynamicActivationConfig, Int8WeightOnlyConfig
from evaluation.methods.rtn import RTNConfig, ScaleDType

__all__ = [
    "AWQConfig",
    "BaselineConfig",
    "BnB4bitConfig",
    "BnBQuantType",
    "GGUFBackend",
    "GGUFConfig",
    "GPTQConfig",
    "Int4WeightOnlyConfig",
    "Int8DynamicActivationConfig",
    "Int8WeightOnlyConfig",
    "MethodConfig",
    "MethodFamily",
    "RTNConfig",
    "ScaleDType",
    "available_methods",
    "example_method_ids",
    "method_config_dict",
    "method_summary",
    "nominal_bits",
    "parse_method",
    "parse_methods",
    "quantize_",
    "register_method",
    "registered_configs",
]
