"""Errors that the CLI turns into exit code 2 (bad input) with one clear line."""

from __future__ import annotations


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
