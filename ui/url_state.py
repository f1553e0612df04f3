"""Page state in the URL: widget keys double as query parameter names (``bind="query-params"``), so a copied
link reopens the same state. This module holds what binding alone does not do: an uploaded config.json
carried in the link (``cfg``), and warnings for link values a widget would silently drop.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Iterable

import streamlit as st

CFG_PARAM = "cfg"
"""Query parameter carrying an uploaded config.json (zlib + URL-safe base64), so upload links work too."""
MAX_CFG_CHARS = 6000
"""Longest ``cfg`` we put in a link: browsers and proxies accept ~8k-character URLs."""
MAX_CONFIG_BYTES = 1_000_000
"""A config.json is a few KB; a link that inflates past 1 MB is damaged or hostile."""


def encode_config(data: bytes) -> str:
    """config.json bytes -> compact URL-safe text (JSON re-serialised compactly, zlib, base64url)."""
    try:
        compact = json.dumps(json.loads(data.decode("utf-8")), separators=(",", ":"), sort_keys=True).encode()
    except (UnicodeDecodeError, json.JSONDecodeError):
        compact = data  # keep it as sent; load_config_bytes will say why it is not a config
    return base64.urlsafe_b64encode(zlib.compress(compact, 9)).decode().rstrip("=")


def decode_config(text: str) -> bytes:
    """Inverse of ``encode_config``; ValueError for a damaged link."""
    damaged = ValueError("the config.json in this link is damaged (the 'cfg' part of the URL); upload the "
                         "file again")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        inflate = zlib.decompressobj()
        data = inflate.decompress(raw, MAX_CONFIG_BYTES + 1)
    except (binascii.Error, zlib.error, ValueError):
        raise damaged from None
    if not inflate.eof:  # truncated link, or more than a config.json may hold
        raise damaged
    return data


def warn_unknown_url_value(key: str, options: Iterable[str], what: str) -> None:
    """Call before creating the bound single-choice widget ``key``: Streamlit silently drops a URL value
    that is not one of the options; say so instead, so a mistyped or outdated link does not mislead."""
    wanted = st.query_params.get(key)
    if wanted and wanted not in set(options):
        st.warning(f"The link asks for {what} {wanted!r}, which is not in the list; showing the default "
                   "instead. Pick one from the list.", icon=":material/link_off:")


def warn_unknown_url_values(key: str, options: Iterable[str], what: str, where: str) -> None:
    """The same for a bound multiselect: the values of ``key`` not in ``options`` are left out; say which.
    ``what`` names them ("GPU"), ``where`` the list they are missing from ("the catalogue")."""
    known = set(options)
    unknown = [v for v in st.query_params.get_all(key) if v not in known]
    if unknown:
        st.warning(f"The link asks for {what} {', '.join(map(repr, unknown))}, not in {where}; left out.",
                   icon=":material/link_off:")
