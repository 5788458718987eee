"""Reading IN.json: instances streamed one at a time with bounded memory, validated in chunks."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..errors import InputError


def read_instances(path: str | Path) -> list[dict[str, Any]]:
    """All instances of an IN.json file (see `iter_instances` for large files)."""
    instances = list(iter_instances(path))
    if not instances:
        raise InputError("instances", [], "a non-empty list of instances")
    return instances


_TOP_LEVEL = 'expected {"instances": [{...}, ...]} at the top level'


class _JSONStream:
    """Reads one JSON text from a file a chunk at a time: values are decoded one by one, so the
    memory held is one array element (plus a read buffer), however long the file."""

    def __init__(self, stream, name: str, chunk: int = 1 << 16) -> None:
        self.stream, self.name, self.chunk = stream, name, chunk
        self.buffer, self.position, self.offset, self.eof = "", 0, 0, False
        self.decoder = json.JSONDecoder()

    def bad(self, what: str = "") -> InputError:
        where = f" at character {self.offset + self.position}"
        return InputError("--instances", self.name, "", f"not valid JSON{where}{': ' + what if what else ''}")

    def _more(self, size: int) -> bool:
        try:
            text = self.stream.read(size)
        except UnicodeDecodeError:
            raise InputError("--instances", self.name, "", "not valid JSON (not UTF-8 text)") from None
        if not text:
            self.eof = True
            return False
        self.offset += self.position
        self.buffer, self.position = self.buffer[self.position:] + text, 0
        return True

    def peek(self) -> str:
        """The next non-blank character ('' at the end of the file), not consumed."""
        while True:
            text, position = self.buffer, self.position
            while position < len(text) and text[position] in " \t\n\r":
                position += 1
            self.position = position
            if position < len(text) or not self._more(self.chunk):
                return text[position] if position < len(text) else ""

    def expect(self, character: str) -> None:
        if self.peek() != character:
            raise self.bad(f"expected {character!r}")
        self.position += 1

    def value(self) -> Any:
        """Decode the next JSON value, reading more of the file while it is incomplete."""
        self.peek()
        size = self.chunk
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buffer, self.position)
            except ValueError as error:  # JSONDecodeError, or a number beyond Python's int-string limit
                if not isinstance(error, json.JSONDecodeError):
                    raise self.bad(str(error).split(";")[0]) from None
                if self.eof or not self._more(size):
                    raise self.bad() from None
                size *= 2  # long values: geometric reads keep re-decoding O(n log n)
                continue
            except RecursionError:
                raise self.bad("nested too deeply") from None
            if end == len(self.buffer) and not self.eof and self._more(size):
                continue  # a number at the end of the buffer may go on in the next chunk
            self.position = end
            return value


def iter_instances(path: str | Path):
    """Yield the instances of an IN.json file `{"instances": [{...}, ...]}` one at a time, with
    bounded memory. Raises InputError for a missing file, invalid JSON or another layout; errors
    after the last instance surface when the generator is exhausted."""
    path = Path(path)
    try:
        found = path.is_file()
    except (ValueError, OSError):
        found = False
    if not found:
        raise InputError("--instances", str(path), "", "file not found")
    with open(path, encoding="utf-8") as stream:
        reader = _JSONStream(stream, str(path))
        first = reader.peek()
        if first != "{":
            if first == "":
                raise reader.bad("empty file")
            reader.value()  # a syntax error, or valid JSON of another layout
            raise InputError("instances", None, "", _TOP_LEVEL)
        reader.expect("{")
        seen = False
        if reader.peek() == "}":
            reader.position += 1
        else:
            while True:
                key = reader.value()
                if not isinstance(key, str):
                    raise reader.bad("object keys are strings")
                reader.expect(":")
                if key == "instances":
                    if seen:
                        raise InputError("instances", None, "", "given twice at the top level")
                    seen = True
                    if reader.peek() != "[":
                        reader.value()
                        raise InputError("instances", None, "", _TOP_LEVEL)
                    reader.expect("[")
                    if reader.peek() == "]":
                        reader.position += 1
                    else:
                        while True:
                            yield reader.value()
                            following = reader.peek()
                            reader.expect("," if following == "," else "]")
                            if following != ",":
                                break
                else:
                    reader.value()
                following = reader.peek()
                reader.expect("," if following == "," else "}")
                if following != ",":
                    break
        if reader.peek() != "":
            raise reader.bad("text after the top-level object")
        if not seen:
            raise InputError("instances", None, "", _TOP_LEVEL)


def renumber_error(error: InputError, offset: int) -> InputError:
    """Renumber `instances[i]` in an error about one chunk to its place in the whole file."""
    match = re.match(r"instances\[(\d+)\]", error.field)
    if match and offset:
        fixed = f"instances[{int(match.group(1)) + offset}]"
        error.field = fixed + error.field[match.end():]
        error.args = (str(error).replace(match.group(0), fixed, 1),)
    return error


def instance_chunks(path: str | Path, size: int):
    chunk: list[Any] = []
    for instance in iter_instances(path):
        chunk.append(instance)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def check_instances_file(family, path: str | Path, batch: int = 4096) -> int:
    """Validate every instance of a (possibly huge) IN.json against `family`, streaming; returns
    how many there are. Errors name the instance by its index in the whole file."""
    count = 0
    for chunk in instance_chunks(path, batch):
        try:
            family.theta_from_instances(chunk)
        except InputError as error:
            raise renumber_error(error, count) from None
        count += len(chunk)
    if count == 0:
        raise InputError("instances", [], "a non-empty list of instances")
    return count
