"""The method protocol: a typed config base class, the registry that maps a config type to its handler,
the one verb ``quantize_(model, config)``, and the method-id parser.

As torchao's ``quantize_(model, Int4WeightOnlyConfig(group_size=32))`` (pytorch/ao
``torchao/quantization/quant_api.py``): a method is data, a frozen ``MethodConfig`` subclass, and a
handler ``handler(model, config, calibration) -> model`` that ``@register_method(ConfigClass)`` files
under the config's type. A config says once, as class attributes, what every family must say: its
``family``, how its ids read (``id_pattern``, ``examples``), whether it needs calibration; and, as
properties, its ``method_id``, its ``calculator_format`` (the byte layout the calculator predicts) and a
one-line ``description``. ``MethodConfig.parse`` turns an id into a config for every family alike.

Families live one per module in this package and register themselves when imported; the package's
``__init__`` imports each one. ``BaselineConfig`` (no quantization) is part of the protocol itself.
"""

from __future__ import annotations

import abc
import difflib
import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from calculator.formats import get_format


class MethodFamily(enum.StrEnum):
    """The families quantfit ships, in the order ``python -m evaluation methods`` lists them.

    A family added from outside may use any other string; it is listed after these.
    """

    BASELINE = "baseline"
    """No quantization: the reference every method is compared with."""
    INT_KERNEL = "int-kernel"
    """Real PyTorch integer kernels (int8 / int4 weight-only, int8 dynamic activations)."""
    RTN = "rtn-simulated"
    """Round-to-nearest at any 2..8 bits, quantized then dequantized with exactly the stored scales."""
    BNB = "bnb"
    """bitsandbytes NF4 / FP4 (``Linear4bit``)."""
    GPTQ = "gptq"
    """GPTQ: Hessian error feedback (Frantar et al. 2022)."""
    AWQ = "awq"
    """AWQ: activation-aware scales (Lin et al. 2023)."""
    GGUF = "gguf"
    """A llama.cpp file type (Q4_K_M ...), made by llama.cpp or gguf-py."""


@dataclass(frozen=True)
class MethodConfig(abc.ABC):
    """Base of every method config: a frozen dataclass whose fields are the method's settings.

    Class attributes each family sets: ``family``; ``label`` (its name in messages, "RTN");
    ``id_pattern`` (full match of a lower-cased method id, named groups go to ``from_id``);
    ``id_prefix`` and ``id_syntax`` (an id starting with the prefix that the pattern does not match is an
    error that shows the syntax, not an unknown method); ``examples`` (ids listed by
    ``available_methods`` and used for "did you mean" hints). Nominal ``bits`` and ``group_size`` are
    class attributes or fields (None: not applicable).
    """

    family: ClassVar[str]
    label: ClassVar[str]
    id_pattern: ClassVar[re.Pattern[str]]
    id_prefix: ClassVar[str | None] = None
    id_syntax: ClassVar[str] = ""
    examples: ClassVar[tuple[str, ...]] = ()
    needs_calibration: ClassVar[bool] = False
    quantize_embeddings: ClassVar[bool | None] = False
    """Passed to the calculator's prediction: False = embeddings and lm_head stay in the baseline dtype."""
    bits: ClassVar[int | None] = None
    group_size: ClassVar[int | None] = None
    runtime_engine: ClassVar[str | None] = None
    """An inference engine that also runs the method's own file (``evaluation.runtime``; GGUF: llama.cpp)."""

    @property
    @abc.abstractmethod
    def method_id(self) -> str:
        """The id that ``parse_method`` turns back into an equal config ("rtn-3b-g32-asym")."""

    @property
    @abc.abstractmethod
    def calculator_format(self) -> str | None:
        """Name of the byte layout in ``calculator.formats`` (or a GGUF file type); None: the baseline dtype."""

    @property
    def description(self) -> str:
        """One line for listings; by default the first line of the class docstring."""
        return (type(self).__doc__ or type(self).__name__).strip().splitlines()[0]

    @classmethod
    def from_id(cls, groups: dict[str, str | None]) -> MethodConfig:
        """The config for the named groups of ``id_pattern``; the default is a settings-free id ("int8")."""
        return cls()

    @classmethod
    def parse(cls, text: str) -> MethodConfig | None:
        """The config ``text`` names, or None when it is not an id of this family."""
        key = text.strip().lower()
        match = cls.id_pattern.fullmatch(key)
        if match is not None:
            return cls.from_id(match.groupdict())
        if cls.id_prefix and key.startswith(cls.id_prefix):
            raise ValueError(
                f"{cls.label} method {key!r} not understood: write {cls.id_syntax}, e.g. "
                f"{' or '.join(cls.examples[:2])}"
            )
        return None


Handler = Callable[[nn.Module, Any, "list[torch.Tensor] | None"], nn.Module]
_REGISTRY: dict[type[MethodConfig], Handler] = {}


def register_method(config_cls: type[MethodConfig]) -> Callable[[Handler], Handler]:
    """Decorator filing ``handler(model, config, calibration) -> model`` under ``config_cls``.

    The config must be a frozen ``MethodConfig`` dataclass, and each of its ``examples`` must parse to a
    config whose ``method_id`` parses back to an equal config (checked here, once, at import).
    """
    frozen = is_dataclass(config_cls) and config_cls.__dataclass_params__.frozen
    if not (isinstance(config_cls, type) and issubclass(config_cls, MethodConfig) and frozen):
        raise ValueError(
            f"{config_cls!r} must be a frozen dataclass subclassing MethodConfig to be registered as a method"
        )
    for text in config_cls.examples:
        config = config_cls.parse(text)
        if config is None or config_cls.parse(config.method_id) != config:
            raise ValueError(f"{config_cls.__name__}: example {text!r} does not parse back to itself")

    def register(handler: Handler) -> Handler:
        _REGISTRY[config_cls] = handler
        return handler

    return register


def registered_configs() -> list[type[MethodConfig]]:
    """Registered config classes: ``MethodFamily`` order first, then other families as registered."""
    order = list(MethodFamily)
    return sorted(_REGISTRY, key=lambda c: order.index(c.family) if c.family in order else len(order))


def quantize_(model: nn.Module, config: MethodConfig, calibration: list[torch.Tensor] | None = None) -> nn.Module:
    """Quantize ``model`` in place with the handler registered for ``type(config)``; returns the model."""
    handler = _REGISTRY.get(type(config))
    if handler is None:
        known = ", ".join(c.__name__ for c in registered_configs())
        raise ValueError(f"{type(config).__name__} is not a registered method config; known: {known}")
    if config.needs_calibration and not calibration:
        raise ValueError(f"{config.method_id} needs calibration sequences (a list of token-id tensors)")
    return handler(model, config, calibration)


# ---------------------------------------------------------------------------------------------- parsing


def example_method_ids() -> list[str]:
    """Every registered family's example ids, in listing order."""
    return [text for cls in registered_configs() for text in cls.examples]


def parse_method(text: str) -> MethodConfig:
    """A method id ("int4-g32", "rtn-3b-g64-asym", "nf4-dq", "gptq-4b-g128", "Q4_K_M"...) -> its config."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"method {text!r} is empty; run `python -m evaluation methods` for the list")
    text = text.strip()
    for cls in registered_configs():
        config = cls.parse(text)
        if config is not None:
            return config
    close = difflib.get_close_matches(text, example_method_ids(), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown method {text!r}{hint} (run `python -m evaluation methods` for the list)")


def parse_methods(text: str) -> list[MethodConfig]:
    """A comma-separated list of method ids -> configs, in order, duplicates removed."""
    configs, seen = [], set()
    for part in text.split(","):
        if part.strip():
            config = parse_method(part)
            if config.method_id not in seen:
                seen.add(config.method_id)
                configs.append(config)
    if not configs:
        raise ValueError(f"no methods in {text!r}; e.g. --methods int8,int4-g32,rtn-3b-g32-asym")
    return configs


def available_methods() -> list[MethodConfig]:
    """One config per example id of every registered family, in listing order."""
    return [cls.parse(text) for cls in registered_configs() for text in cls.examples]


# ---------------------------------------------------------------------------------------------- describing


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def method_config_dict(config: MethodConfig) -> dict:
    """The config's fields (what it was constructed with), JSON-ready, plus its class name."""
    return {"class": type(config).__name__, **{f.name: _plain(getattr(config, f.name)) for f in fields(config)}}


def method_summary(config: MethodConfig) -> dict:
    """What a results row says about a method: id, family, nominal bits, group size, format."""
    return {
        "method_id": config.method_id,
        "family": str(config.family),
        "bits": config.bits,
        "group_size": config.group_size,
        "calculator_format": config.calculator_format,
        "needs_calibration": config.needs_calibration,
        "method_config": method_config_dict(config),
    }


def nominal_bits(config: MethodConfig) -> float | None:
    """Nominal bits per weight of a config's calculator format (None for the baseline and GGUF file types,
    whose bits depend on the model's tensors)."""
    if config.calculator_format is None:
        return None
    try:
        return float(get_format(config.calculator_format).bits_per_weight())
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------- the baseline


@dataclass(frozen=True)
class BaselineConfig(MethodConfig):
    """No quantization: the reference every method is compared with."""

    family: ClassVar[str] = MethodFamily.BASELINE
    label: ClassVar[str] = "baseline"
    id_pattern: ClassVar[re.Pattern[str]] = re.compile(r"baseline|none")
    examples: ClassVar[tuple[str, ...]] = ("baseline",)
    method_id: ClassVar[str] = "baseline"
    calculator_format: ClassVar[None] = None
    """None: the runner asks the calculator for the baseline dtype (bf16 / fp32)."""
    description: ClassVar[str] = "no quantization: the reference every method is compared with"


@register_method(BaselineConfig)
def _keep(model: nn.Module, config: BaselineConfig, calibration: list[torch.Tensor] | None = None) -> nn.Module:
    return model
