"""The context picker: a number box whose + and - double and halve, and preset pills beside it (4k ... 128k,
the model's maximum). Used by Will it fit? and What can I run? (URL key ``ctx``)."""

from __future__ import annotations

import streamlit as st

from ui.url_state import warn_bad_url_number

CONTEXT_PRESETS = {"4k": 4096, "8k": 8192, "32k": 32768, "128k": 131072}
"""Context sizes people pick (tokens); "max" (the model's maximum) joins them when the model has one."""
MODEL_MAX = "max"


def next_power_of_two(n: int) -> int:
    """The smallest power of two above ``n``: 8192 -> 16384, 10000 -> 16384."""
    return 1 << n.bit_length()


def previous_power_of_two(n: int) -> int:
    """The largest power of two below ``n`` (at least 1): 8192 -> 4096, 10000 -> 8192."""
    return 1 if n <= 2 else 1 << ((n - 1).bit_length() - 1)


def _step_by_powers_of_two(key: str, max_value: int) -> None:
    """on_change of a number box with ``step=1``: its + and - move to the next or previous power of two (a
    one-token step is useless for a context). A typed value is kept as typed."""
    new, old = st.session_state.get(key), st.session_state.get(f"{key}_last")
    if new is None or old is None:
        return
    if new == old + 1:
        st.session_state[key] = min(next_power_of_two(old), max_value)
    elif new == old - 1:
        st.session_state[key] = previous_power_of_two(old)


def _apply_context_preset(key: str, max_context: int | None) -> None:
    label = st.session_state.get(f"{key}_preset")
    value = max_context if label == MODEL_MAX else CONTEXT_PRESETS.get(label)
    if value:
        st.session_state[key] = value


def context_input(box, presets_box, *, max_context: int | None, key: str = "ctx", default: int = 8192,
                  max_value: int = 10_000_000) -> int:
    """The context box (URL key ``key``) in ``box``, its + and - doubling and halving, and preset pills
    (4k ... 128k, the model's maximum) in ``presets_box``; returns the context in tokens."""
    warn_bad_url_number(key, low=1, high=max_value, default=default, what="context (tokens)")
    value = box.number_input(
        "Context (tokens)", 1, max_value, default, step=1, key=key, bind="query-params",
        on_change=_step_by_powers_of_two, args=(key, max_value),
        help="Tokens per sequence (prompt + answer). + and − double and halve it; type any value.")
    st.session_state[f"{key}_last"] = value
    options = [*CONTEXT_PRESETS, *([MODEL_MAX] if max_context else [])]
    matching = [o for o in options if (max_context if o == MODEL_MAX else CONTEXT_PRESETS[o]) == value]
    st.session_state[f"{key}_preset"] = matching[0] if matching else None
    presets_box.pills("Context presets", options, key=f"{key}_preset", on_change=_apply_context_preset,
                      args=(key, max_context), label_visibility="collapsed",
                      help=f"max: the model's own maximum ({max_context:,} tokens)" if max_context else None)
    return int(value)
