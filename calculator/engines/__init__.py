"""Serving engines: each one's memory rules (KV cache, buffers, placement, defaults) and speed, with sources.

``calculator.fit.fit`` asks ``get_engine(FitOptions.engine)`` for a ``Layout``. The interface is
``calculator.engines.base`` (``Engine``, ``DeviceMemory``, ``Layout``); the engines are listed in
``calculator.engines.registry``. Adding one: a module with an ``Engine`` subclass and one registry line.
"""

from calculator.engines.base import DeviceMemory, Engine, FlashAttention, Layout
from calculator.engines.registry import EngineName, engine_names, get_engine, parse_engine

__all__ = ["DeviceMemory", "Engine", "EngineName", "FlashAttention", "Layout", "engine_names", "get_engine",
           "parse_engine"]
