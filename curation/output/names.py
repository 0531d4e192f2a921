"""File names as the output stores and shows them.

A file system allows any bytes but ``/`` and NUL in a name; Python holds bytes that are not UTF-8
as lone surrogates, which Arrow, JSON readers and terminals refuse. The tables store such names as
valid UTF-8 with ``\\xNN`` escapes (``path``, ``rel_path``) and keep the exact bytes in
``videos.path_bytes``; the terminal shows every name on one line.
"""

from __future__ import annotations

from typing import Any


def utf8_text(text: str) -> str:
    """``text`` as valid UTF-8: a file name's bytes that are not UTF-8 (which Python holds as
    lone surrogates) become ``\\xNN`` escapes. Paths keep their exact bytes in ``path_bytes``."""
    try:
        text.encode()
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no file name's byte gives
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


def utf8_values(value: Any) -> Any:
    """``value`` with every string in it (in lists and dicts too) made :func:`utf8_text`."""
    if isinstance(value, str):
        return utf8_text(value)
    if isinstance(value, dict):
        return {key: utf8_values(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [utf8_values(item) for item in value]
    return value


def one_line(text: str) -> str:
    """``text`` for a terminal line: :func:`utf8_text`, with control characters (a newline in a
    file name, say) escaped as ``repr`` does."""
    text = utf8_text(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
