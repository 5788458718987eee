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
            parts.append(f"= {value!r}")
        message = " ".join(parts)
        if domain:
            message += f" is outside the allowed domain: {domain}"
        if detail:
            message += f" ({detail})" if domain else f": {detail}"
        super().__init__(one_line(message))


def one_line(text: str) -> str:
    """`text` with line breaks and other unprintable characters escaped (user-given names may hold them)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in text)
