"""Page state in the URL: widget keys double as query parameter names (``bind="query-params"``), so a copied
link reopens the same state. This module holds what binding alone does not do: an uploaded config.json
carried in the link (``cfg``), and warnings for link values a widget would silently drop.

A link is written by anyone, so its values are read with bounds before any arithmetic: ``run_page`` calls
``drop_unusable_url_values`` first (values too long to be real, numbers Python reads as infinite or
beyond int64, which Streamlit's own number parsing turns into a crash), then each page warns for values
its widgets would replace (``warn_bad_url_number``, ``warn_unknown_url_value(s)``), naming the value and
what is shown instead.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import zlib
from collections.abc import Iterable

import streamlit as st

from calculator.units import shown

CFG_PARAM = "cfg"
"""Query parameter carrying an uploaded config.json (zlib + URL-safe base64), so upload links work too."""
MAX_CFG_CHARS = 6000
"""Longest ``cfg`` we put in a link: browsers and proxies accept ~8k-character URLs."""
MAX_CONFIG_BYTES = 1_000_000
"""A config.json is a few KB; a link that inflates past 1 MB is damaged or hostile."""
MAX_URL_VALUE_CHARS = 1000
"""Longest value of any other query parameter (Hub ids, paths and method lists are far shorter)."""
MAX_URL_NUMBER_CHARS = 40
"""Longest text read as a number from the link."""
MAX_URL_WARNINGS = 5
"""A link with many bad values gets this many warnings, then one line for the rest."""
_LINK_ICON = ":material/link_off:"


def encode_config(data: bytes) -> str:
    """config.json bytes -> compact URL-safe text (JSON re-serialised compactly, zlib, base64url)."""
    try:
        compact = json.dumps(json.loads(data.decode("utf-8")), separators=(",", ":"), sort_keys=True).encode()
    except (ValueError, RecursionError):  # not UTF-8 / JSON, nested 200,000 deep, a 5,000-digit number
        compact = data  # keep it as sent; load_config_bytes will say why it is not a config
    return base64.urlsafe_b64encode(zlib.compress(compact, 9)).decode().rstrip("=")


def decode_config(text: str) -> bytes:
    """Inverse of ``encode_config``; ValueError for a damaged link."""
    damaged = ValueError("the config.json in this link is damaged (the 'cfg' part of the URL); upload the "
                         "file again")
    if len(text) > MAX_CFG_CHARS:  # longer than any link this app writes
        raise damaged
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        inflate = zlib.decompressobj()
        data = inflate.decompress(raw, MAX_CONFIG_BYTES + 1)
    except (binascii.Error, zlib.error, ValueError):
        raise damaged from None
    if not inflate.eof:  # truncated link, or more than a config.json may hold
        raise damaged
    return data


def url_number(raw: str, low: float, high: float, *, whole: bool = True) -> tuple[float | None, str | None]:
    """(the value a bound ``number_input`` takes from the link text ``raw``, or None if it falls back to its
    default; what is wrong with ``raw``, or None). Read as Streamlit reads it (``float``, then ``int`` for a
    whole-number widget) but with the length bounded first.

    ``url_number("-5", 1, 64)`` -> ``(None, "is below 1")``; ``url_number("4096.5", 1, 8192)`` ->
    ``(4096, "is not a whole number")``; ``url_number("8192", 1, 10**7)`` -> ``(8192, None)``.
    """
    if len(raw) > MAX_URL_NUMBER_CHARS:
        return None, f"is {len(raw):,} characters long, not a number"
    try:
        number = float(raw)
    except ValueError:
        return None, "is not a number"
    if not math.isfinite(number):
        return None, "is not a finite number"
    value = int(number) if whole else number
    if value < low:
        return None, f"is below {low:,}"
    if value > high:
        return None, f"is above {high:,}"
    if whole and value != number:
        return value, "is not a whole number"
    return value, None


def forget_url_value(key: str) -> None:
    """Take ``key`` out of the link, so no widget is seeded from it. Streamlit seeds a bound widget from the
    query string the page was opened with (``QueryParams._initial_query_params``, Streamlit 1.67 as pinned in
    requirements.txt), not from ``st.query_params``, and refuses to delete a key already bound to a widget."""
    from streamlit.runtime.state.session_state_proxy import get_session_state

    with get_session_state().query_params() as params:
        params._initial_query_params.pop(key, None)
        if key in params and not params.is_bound(key):
            del params[key]


def replace_url_value(key: str, value: str) -> None:
    """Seed the bound widget ``key`` with ``value`` instead of what the link says (a typed preset name made
    canonical: ``model=Llama-3.1-8B-Instruct`` -> ``llama-3.1-8b``), through the same query string
    ``forget_url_value`` edits; call before the widget is created."""
    from streamlit.runtime.state.session_state_proxy import get_session_state

    with get_session_state().query_params() as params:
        params._initial_query_params[key] = value
        if not params.is_bound(key):
            params[key] = value


def warn_bad_url_number(key: str, *, low: float, high: float, default: float, what: str, whole: bool = True
                        ) -> None:
    """Call before creating the bound ``number_input`` ``key`` (range ``[low, high]``, default ``default``):
    Streamlit silently replaces a link value it cannot use by the default; say which value and what is
    shown instead (and drop it from the link, as Streamlit would)."""
    raw = st.query_params.get(key)
    if raw is None:
        return
    value, problem = url_number(raw, low, high, whole=whole)
    if problem is None:
        return
    if value is None:
        forget_url_value(key)
        value = default
    st.warning(f"The link asks for {what} {shown(raw)}, which {problem}; showing {value:,} instead.",
               icon=_LINK_ICON)


def _unusable(key: str, value: str) -> str | None:
    """Why a link value is dropped before any page reads it, or None."""
    limit = MAX_CFG_CHARS if key == CFG_PARAM else MAX_URL_VALUE_CHARS
    if len(value) > limit:
        return f"{len(value):,} characters, over the {limit:,} a link of this app holds"
    if len(value) <= MAX_URL_NUMBER_CHARS:
        try:
            number = float(value)
        except ValueError:
            return None
        if not math.isfinite(number):
            return "not a finite number"
        if abs(number) >= 2**63:
            return "a number beyond any setting"
    return None


def drop_unusable_url_values() -> None:
    """Remove every link value no widget can use (see ``_unusable``), with a warning naming it; the page then
    shows its default. ``run_page`` calls this before the page body, because Streamlit's own parsing of
    ``ctx=inf`` or a 5,000-digit number ends in an OverflowError inside ``number_input``."""
    dropped = []
    for key in list(st.query_params):
        values = st.query_params.get_all(key)
        reasons = [why for v in values if (why := _unusable(key, v))]
        if reasons:
            dropped.append((key, values[0], reasons[0]))
            forget_url_value(key)
    for key, value, why in dropped[:MAX_URL_WARNINGS]:
        st.warning(f"The link's {key} value {shown(value)} is unusable ({why}); the default is shown instead.",
                   icon=_LINK_ICON)
    if len(dropped) > MAX_URL_WARNINGS:
        st.warning(f"{len(dropped) - MAX_URL_WARNINGS} more unusable link values were left out.", icon=_LINK_ICON)


def warn_unknown_url_value(key: str, options: Iterable[str], what: str) -> None:
    """Call before creating the bound single-choice widget ``key``: Streamlit silently drops a URL value
    that is not one of the options; say so instead, so a mistyped or outdated link does not mislead."""
    wanted = st.query_params.get(key)
    if wanted and wanted not in set(options):
        st.warning(f"The link asks for {what} {shown(wanted)}, which is not in the list; showing the default "
                   "instead. Pick one from the list.", icon=_LINK_ICON)


def warn_too_many_url_values(key: str, limit: int, what: str) -> None:
    """Call before a bound multiselect with ``max_selections=limit``: Streamlit keeps the link's first ``limit``
    values and drops the rest silently; say so."""
    values = st.query_params.get_all(key)
    if len(values) > limit:
        st.warning(f"The link lists {len(values):,} {what}; only the first {limit} are shown.", icon=_LINK_ICON)


def warn_unknown_url_values(key: str, options: Iterable[str], what: str, where: str) -> None:
    """The same for a bound multiselect: the values of ``key`` not in ``options`` are left out; say which.
    ``what`` names them ("GPU"), ``where`` the list they are missing from ("the catalogue")."""
    known = set(options)
    unknown = list(dict.fromkeys(v for v in st.query_params.get_all(key) if v not in known))
    if unknown:
        listed = ", ".join(map(shown, unknown[:MAX_URL_WARNINGS]))
        more = f" and {len(unknown) - MAX_URL_WARNINGS} more" if len(unknown) > MAX_URL_WARNINGS else ""
        st.warning(f"The link asks for {what} {listed}{more}, not in {where}; left out.", icon=_LINK_ICON)
