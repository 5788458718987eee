"""Which files written by another convexop version this one reads.

The rule (semantic versioning of the file formats): the *major* number names the format. Files from
the same major version load, whether their minor is older (newer code only adds keys, with defaults)
or newer (then loading fails with a clear reason only if the file uses something this version does
not know). Files from another major version are refused: a newer one asks for an upgrade, an older
one for re-training or re-generating. A missing or malformed version is refused too.
"""

from __future__ import annotations

import re

from .errors import InputError
from .version import __version__

_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:[.+-]?[0-9A-Za-z.+-]*)?$")


def parse_version(text: object) -> tuple[int, int, int] | None:
    """'1.2.3' (optionally with a suffix such as 'rc1' or '+local') -> (1, 2, 3); else None."""
    if not isinstance(text, str):
        return None
    match = _VERSION.match(text.strip())
    return None if match is None else tuple(int(part) for part in match.groups())  # type: ignore[return-value]


def check_compatible(found: object, field: str, current: str = __version__) -> None:
    """Raise InputError naming `field` unless a file written by version `found` loads here."""
    mine = parse_version(current)
    theirs = parse_version(found)
    assert mine is not None, current
    domain = f"convexop {mine[0]}.x.y (this is convexop {current})"
    if theirs is None:
        raise InputError(field, found, domain, "missing or malformed version")
    if theirs[0] > mine[0]:
        raise InputError(field, found, domain, f"written by a newer major version {theirs[0]}; "
                                               "upgrade convexop to read it")
    if theirs[0] < mine[0]:
        raise InputError(field, found, domain, f"written by the older major version {theirs[0]}, "
                                               "whose format this version no longer reads; "
                                               "re-train or re-generate it")
