"""Families defined outside the package: `FILE.py:NAME` specs and the `convexop.families` entry points.

A spec `path/to/file.py:NAME` executes the file (once per content) and takes its attribute NAME: a
`Family` instance (built with `convexop.from_torch` / `convexop.from_cvxpy`) or a zero-argument
callable returning one. The family is renamed to `<absolute path>:NAME`, and its `family_config()`
records the file's sha256, so a run directory or data set made with it can rebuild it later and is
refused with a clear message when the file has changed since.

Installed packages publish families under the entry-point group `convexop.families`: the entry
point's name is the family name and it loads to a Family (or a callable returning one).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from ..errors import InputError
from .base import Family

__all__ = ["ENTRY_POINT_GROUP", "canonical_name", "entry_point_names", "is_file_spec", "load_family"]

ENTRY_POINT_GROUP = "convexop.families"
_loaded: dict[tuple[str, str], Any] = {}  # (path, sha256) -> executed module


def is_file_spec(name: str) -> bool:
    path, sep, attribute = name.rpartition(":")
    return bool(sep) and path.endswith(".py") and bool(attribute)


def canonical_name(name: str) -> str:
    """The name a family file spec is recorded under (absolute path); other names unchanged."""
    if not is_file_spec(name):
        return name
    path, _, attribute = name.rpartition(":")
    return f"{Path(path).expanduser().resolve()}:{attribute}"


def entry_point_names() -> list[str]:
    return sorted(ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))


def _as_family(obj: Any, where: str) -> Family:
    if not isinstance(obj, Family) and callable(obj):
        try:
            obj = obj()
        except Exception as error:  # user code: report any failure on one line
            raise InputError("family", where, "", f"building it failed: {type(error).__name__}: {error}") from None
    if not isinstance(obj, Family):
        raise InputError("family", where, "", f"is a {type(obj).__name__}, not a family "
                         "(build one with convexop.from_cvxpy or convexop.from_torch)")
    return obj


def _load_file(spec: str) -> Family:
    path_text, _, attribute = spec.rpartition(":")
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise InputError("family", spec, "", f"file {path} does not exist")
    content = path.read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    key = (str(path), digest)
    if key not in _loaded:
        module_name = f"convexop_user_family_{digest[:16]}"
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as error:  # user code
            sys.modules.pop(module_name, None)
            raise InputError("family", spec, "", f"loading {path} failed: {type(error).__name__}: {error}") from None
        _loaded[key] = module
    module = _loaded[key]
    if not hasattr(module, attribute):
        names = sorted(k for k, v in vars(module).items() if isinstance(v, Family))
        raise InputError("family", spec, "", f"{path.name} defines no {attribute!r}"
                         + (f"; its families: {', '.join(names)}" if names else ""))
    family = _as_family(getattr(module, attribute), spec)
    family.name = f"{path}:{attribute}"
    family.source = {"file_sha256": digest}
    return family


def _load_entry_point(name: str) -> Family | None:
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                obj = ep.load()
            except Exception as error:  # third-party code
                raise InputError("family", name, "", f"entry point {ep.value} failed to load: "
                                 f"{type(error).__name__}: {error}") from None
            family = _as_family(obj, name)
            family.name = name
            return family
    return None


def load_family(name: str, **config: Any) -> Family | None:
    """The family of a file spec or an entry point (None when `name` is neither); `config` is the
    recorded family_config (a file's sha256), checked against the file as it is now."""
    family = _load_file(name) if is_file_spec(name) else _load_entry_point(name)
    if family is None:
        return None
    expected = config.get("file_sha256")
    unknown = sorted(set(config) - {"file_sha256"})
    if unknown:
        raise TypeError(f"unexpected keyword {unknown[0]!r}")
    if expected is not None and family.family_config().get("file_sha256") != expected:
        raise InputError("family", name, "", f"the file changed since this run or data set was made (sha256 was "
                         f"{str(expected)[:12]}..., now {family.family_config().get('file_sha256', '')[:12]}...); "
                         "restore it or train again")
    return family
