"""Families defined outside the package: `FILE.py:NAME` specs and the `convexop.families` entry points.

A spec `path/to/file.py:NAME` executes the file (once per content) and takes its attribute NAME: a
`Family` instance (built with `convexop.from_torch` / `convexop.from_cvxpy`) or a zero-argument
callable returning one. The family is renamed to `<absolute path>:NAME`, and its `family_config()`
records the file's sha256, so a run directory or data set made with it can rebuild it later and is
refused with a clear message when the file has changed since.

Verified before it runs: the file's bytes are read once and hashed, and when a sha256 is recorded
(rebuilding a run) those exact bytes are compiled and executed only after the hash matched; the
file is never read again after hashing. Its folder is on sys.path while it loads (sibling imports).
A run folder records the file's path relative to itself as well as the absolute one (`locate`), so
a run moved with its file still finds it; `family_file_override` (`--family FILE.py:NAME`) points a
moved run at the file elsewhere, under the same hash check.

Installed packages publish families under the entry-point group `convexop.families`: the entry
point's name is the family name and it loads to a Family (or a callable returning one).
"""

from __future__ import annotations

import hashlib
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..files import file_sha256
from .base import Family

__all__ = ["ENTRY_POINT_GROUP", "canonical_name", "entry_point_names", "family_file_override", "is_file_spec",
           "load_family", "locate"]

ENTRY_POINT_GROUP = "convexop.families"
MAX_FILE_BYTES = 64 * 1024 * 1024  # a family file larger than this is refused unread
_loaded: dict[tuple[str, str], Any] = {}  # (path, sha256) -> executed module
_located: dict[tuple[str, str], Path] = {}  # (recorded name, sha256) -> the file found for it (locate)
_override: list[tuple[Path, str, str, str]] = []  # (path, attribute, spec, field) of --family, innermost last


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
        except Exception as error:  # noqa: BLE001  (user code: any error becomes one line)
            raise InputError("family", where, "", f"building it failed: {type(error).__name__}: {error}") from None
    if not isinstance(obj, Family):
        raise InputError("family", where, "", f"is a {type(obj).__name__}, not a family "
                         "(build one with convexop.from_cvxpy or convexop.from_torch)")
    return obj



def _load_file(spec: str, expected: str | None = None) -> Family:
    """The family of `spec`; with `expected` (a recorded sha256) the file's code runs only when the
    bytes read hash to it. A file found by `locate` for (spec, expected) is read instead of spec's path."""
    path_text, _, attribute = spec.rpartition(":")
    located = _located.get((spec, expected)) if expected is not None else None
    try:
        path = located if located is not None else Path(path_text).expanduser().resolve()
        found = path.is_file()
    except (ValueError, OSError):  # NUL bytes, over-long names
        found = False
    if not found:
        raise InputError("family", spec, "", f"file {path_text} does not exist")
    try:
        with open(path, "rb") as stream:  # read once: these bytes are hashed, and only these run
            content = stream.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise InputError("family", spec, "", f"cannot read {path} ({error.strerror or error})") from None
    if len(content) > MAX_FILE_BYTES:
        raise InputError("family", spec, "", f"{path} is larger than {MAX_FILE_BYTES >> 20} MiB; not a family file")
    digest = hashlib.sha256(content).hexdigest()
    if expected is not None and digest != expected:
        raise InputError("family", spec, "", f"the file changed since this run or data set was made (sha256 was "
                         f"{str(expected)[:12]}..., now {digest[:12]}... in {path}); its code was not run; "
                         "restore it or train again")
    key = (str(path), digest)
    if key not in _loaded:
        module_name = f"convexop_user_family_{digest[:16]}"
        module = types.ModuleType(module_name)
        module.__file__ = str(path)
        sys.modules[module_name] = module
        folder = str(path.parent)
        sys.path.insert(0, folder)  # sibling modules of the family file import while it loads
        try:
            exec(compile(content, str(path), "exec", dont_inherit=True), module.__dict__)  # noqa: S102  (verified bytes)
        except Exception as error:  # noqa: BLE001  (user code, SyntaxError, NUL bytes: any error becomes one line)
            sys.modules.pop(module_name, None)
            raise InputError("family", spec, "", f"loading {path} failed: {type(error).__name__}: {error}") from None
        finally:
            if folder in sys.path:
                sys.path.remove(folder)
        _loaded[key] = module
    module = _loaded[key]
    if not hasattr(module, attribute):
        names = sorted(k for k, v in vars(module).items() if isinstance(v, Family))
        raise InputError("family", spec, "", f"{path.name} defines no {attribute!r}"
                         + (f"; its families: {', '.join(names)}" if names else ""))
    family = _as_family(getattr(module, attribute), spec)
    family.name = spec if located is not None else f"{path}:{attribute}"  # a located file keeps the recorded name
    family.source = {"file_sha256": digest}
    family.file_path = path  # the file actually read (run folders record it relative to themselves)
    return family


@contextmanager
def family_file_override(spec: str, field: str = "--family") -> Iterator[None]:
    """While active, `locate` takes the family file of a run from `spec` (`--family FILE.py:NAME`,
    for a run folder moved away from its file); the recorded sha256 is still checked."""
    if not isinstance(spec, str) or not is_file_spec(spec):
        raise InputError(field, spec, "FILE.py:NAME (the family file a run was trained on)")
    path_text, _, attribute = spec.rpartition(":")
    try:
        path = Path(path_text).expanduser().resolve()
        found = path.is_file()
    except (ValueError, OSError):
        found = False
    if not found:
        raise InputError(field, spec, "", f"file {path_text} does not exist")
    _override.append((path, attribute, spec, field))
    try:
        yield
    finally:
        _override.pop()


def locate(recorded: str, sha256: Any, folder: Path, recorded_file: Any = None) -> None:
    """Find the family file of a run (or model) folder that records family `recorded` with file
    sha256 `sha256`, and make `load_family(recorded, file_sha256=sha256)` read it: the
    `family_file_override` file if one is active, else the recorded path relative to `folder`
    (`recorded_file["relative"]`), the recorded name's path (a relative one taken against `folder`,
    never the working directory), the recorded absolute path; the first whose sha256 matches, else
    the first that exists (refused when loaded, before it runs). Nothing is executed here."""
    if not isinstance(recorded, str) or not is_file_spec(recorded):
        if _override:
            _, _, spec, field = _override[-1]
            raise InputError(field, spec, "", f"the run in {folder} trains {recorded}, not a family file")
        return
    path_text, _, attribute = recorded.rpartition(":")
    if _override:
        path, given, spec, field = _override[-1]
        if given != attribute:
            raise InputError(field, spec, "", f"the run in {folder} was trained on {attribute!r} of a family file; "
                             f"give FILE.py:{attribute}")
        candidates = [path]
    else:
        folder = Path(folder).expanduser().resolve()
        recorded_file = recorded_file if isinstance(recorded_file, dict) else {}
        texts = [recorded_file.get("relative"), path_text, recorded_file.get("absolute")]
        candidates = [folder / Path(text).expanduser() for text in texts if isinstance(text, str) and text]
    existing = []
    for candidate in candidates:
        try:
            if candidate.is_file():
                existing.append(candidate.resolve())
        except (ValueError, OSError):
            continue
    if not existing:
        raise InputError("family", recorded, "", f"the family file of the run in {folder} is missing; if the run "
                         f"folder or the file moved, give --family FILE.py:{attribute}")
    if not isinstance(sha256, str):  # a family file is rebuilt only against its recorded sha256
        raise InputError("family_config.file_sha256", sha256, "the sha256 recorded for the family file of a run")
    for candidate in existing:
        try:
            if candidate.stat().st_size <= MAX_FILE_BYTES and file_sha256(candidate) == sha256:
                _located[(recorded, sha256)] = candidate
                return
        except OSError:
            continue
    _located[(recorded, sha256)] = existing[0]  # loading it refuses it before it runs


def _load_entry_point(name: str) -> Family | None:
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                obj = ep.load()
            except Exception as error:  # noqa: BLE001  (third-party code: any error becomes one line)
                raise InputError("family", name, "", f"entry point {ep.value} failed to load: "
                                 f"{type(error).__name__}: {error}") from None
            family = _as_family(obj, name)
            family.name = name
            return family
    return None


def load_family(name: str, **config: Any) -> Family | None:
    """The family of a file spec or an entry point (None when `name` is neither); `config` is the
    recorded family_config (a file's sha256), checked against the file as it is now."""
    expected = config.get("file_sha256")
    unknown = sorted(set(config) - {"file_sha256"})
    if unknown:
        raise TypeError(f"unexpected keyword {unknown[0]!r}")
    if expected is not None and not isinstance(expected, str):
        raise InputError("family_config.file_sha256", expected, "a sha256 hex digest")
    family = _load_file(name, expected) if is_file_spec(name) else _load_entry_point(name)
    if family is None:
        return None
    if expected is not None and family.family_config().get("file_sha256") != expected:
        raise InputError("family", name, "", f"the file changed since this run or data set was made (sha256 was "
                         f"{str(expected)[:12]}..., now {family.family_config().get('file_sha256', '')[:12]}...); "
                         "restore it or train again")
    return family
