"""Sharded data generation: `generate --shard i/k` solves the i-th of k slices, `merge` joins them.

Every shard draws all n parameters from the seed (cheap) and solves only its contiguous slice
[i n / k, (i + 1) n / k), so shards can run on different machines or in a job array, and the merged
file holds the same arrays, sha256 and attributes (creation time aside) as the unsharded one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .data import SHARD_ATTRS, Dataset, read_dataset, write_dataset
from .errors import InputError

_SHARD = re.compile(r"^\s*(\d{1,9})\s*/\s*(\d{1,9})\s*$")
# attributes that must agree between shards (provenance of the whole set)
CONSISTENT = ("family", "family_config", "version", "seed", "law", "reference_method", "n_total",
              "shard_count")


def parse_shard(text: str) -> tuple[int, int]:
    """'2/8' -> (2, 8): shard index i (from 0) of k shards."""
    match = _SHARD.match(text) if isinstance(text, str) else None
    if match is None or not 0 <= int(match.group(1)) < int(match.group(2)):
        raise InputError("--shard", text, "i/k with integers 0 <= i < k, e.g. 0/4")
    return int(match.group(1)), int(match.group(2))


def merge_shards(paths: Sequence[str | Path]) -> Dataset:
    """Check that `paths` are all k shards of one set (same family, configuration, seed, law,
    version, size), each with a valid sha256, and join them in shard order."""
    if not paths:
        raise InputError("SHARD", None, "one or more shard files")
    shards = []
    for path in paths:
        data = read_dataset(path)
        missing = [name for name in SHARD_ATTRS if name not in data.attrs]
        if missing:
            raise InputError("SHARD", str(path), "", "not a shard (made without --shard i/k)")
        shards.append((Path(path), data))
    first_path, first = shards[0]
    for path, data in shards[1:]:
        for name in CONSISTENT:
            if data.attrs.get(name) != first.attrs.get(name):
                raise InputError(f"{path}: {name}", data.attrs.get(name), "",
                                 f"differs from {first_path} ({first.attrs.get(name)!r}); shards of "
                                 "one set share family, configuration, seed, law, version and size")
        if not np.array_equal(data.points, first.points):
            raise InputError(f"{path}: points", None, "", f"differ from those of {first_path}")
    count = int(first.attrs["shard_count"])
    indices = sorted(int(data.attrs["shard_index"]) for _, data in shards)
    if count != len(shards) or indices != list(range(count)):
        seen = set(indices)
        missing = [i for i in range(min(count, len(shards) + 3)) if i not in seen]  # the first few
        repeated = sorted({i for i in indices if indices.count(i) > 1})
        detail = (f"missing shard(s) {', '.join(f'{i}/{count}' for i in missing)}" if missing else
                  f"shard(s) {', '.join(f'{i}/{count}' for i in repeated)} given twice")
        raise InputError("SHARD", f"{len(shards)} files", f"each of the {count} shards exactly once", detail)
    shards.sort(key=lambda item: int(item[1].attrs["shard_index"]))
    n_total = int(first.attrs["n_total"])
    offset = 0
    for path, data in shards:
        index = int(data.attrs["shard_index"])
        expected = (index * n_total // count, (index + 1) * n_total // count)
        if int(data.attrs["shard_offset"]) != offset or (offset, offset + len(data.params)) != expected:
            raise InputError(f"{path}: shard_offset", data.attrs["shard_offset"], "",
                             f"shard {index}/{count} of {n_total} instances covers {list(expected)}")
        offset += len(data.params)
    params = np.concatenate([data.params for _, data in shards])
    targets = np.concatenate([data.targets for _, data in shards])
    attrs = {k: v for k, v in first.attrs.items() if k not in SHARD_ATTRS + ("sha256", "created")}
    return Dataset(params, targets, first.points, attrs)


def merge_files(out: str | Path, paths: Sequence[str | Path]) -> tuple[Dataset, str]:
    """Merge shard files into `out` (written atomically); returns the data and its sha256."""
    merged = merge_shards(paths)
    return merged, write_dataset(out, merged)
