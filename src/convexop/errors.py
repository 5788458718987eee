"""Errors that the CLI turns into exit code 2 (bad input) with one clear line."""

from __future__ import annotations

import os
from pathlib import Path


class InputError(ValueError):
    """Bad user input: names the field, the value given and the allowed domain."""

    def __init__(self, field: str, value: object = None, domain: str = "", detail: str = ""):
        self.field = field
        self.value = value
        self.domain = domain
        parts = [f"{field}"]
        if value is not None:
            parts.append(f"= {abbreviate(value)}")
        message = " ".join(parts)
        if domain:
            message += f" is outside the allowed domain: {domain}"
        if detail:
            message += f" ({detail})" if domain else f": {detail}"
        super().__init__(one_line(message))


def abbreviate(value: object, limit: int = 80) -> str:
    """repr(value), shortened to about `limit` characters (a long array keeps its start and its length)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f", {len(value)} items" if isinstance(value, (list, tuple, str, bytes)) else ""
    return f"{text[:limit - 20]}...{text[-1] if text[-1] in ')]}' else ''} ({len(text)} characters{size})"


def one_line(text: str) -> str:
    """`text` with line breaks and other unprintable characters escaped (user-given names may hold them)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in text)


def user_code_location(error: BaseException) -> str | None:
    """'family file FILE, in FUNCTION (line N)' when the innermost frame of the error's traceback is in
    user code (a family file or a user module: not convexop, torch, numpy or the standard library)."""
    import traceback

    package = Path(__file__).resolve().parent  # the convexop package
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return None
    last = frames[-1]
    path = Path(last.filename)
    if path.suffix != ".py" or not path.is_absolute():
        return None
    try:
        path = path.resolve()
    except OSError:
        return None
    library = any(part in ("site-packages", "dist-packages") for part in path.parts)
    if library or package in path.parents or path.is_relative_to(Path(os.__file__).resolve().parent):
        return None
    return f"family file {path}, in {last.name} (line {last.lineno})"
