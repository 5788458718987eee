"""HDF5 data sets: one file per split with `params`, `targets`, `points` and provenance attributes.

Files are written to a temporary name and renamed, so a crash never leaves a half-written set; the
sha256 of the arrays is stored and checked on reading. Same family, law and seed give the same arrays.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .errors import InputError
from .families import Family
from .files import atomic_output
from .version import __version__
from .versioning import check_compatible

MAX_INSTANCES = 100_000_000  # per file; larger sets are generated as shards (`generate --shard i/n`)
MAX_SEED = 2**32 - 1
SHARD_ATTRS = ("shard_index", "shard_count", "shard_offset", "n_total")


@dataclass
class Dataset:
    params: np.ndarray  # (n, P)
    targets: np.ndarray  # (n, points)
    points: np.ndarray
    attrs: dict[str, Any]


def array_digest(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return digest.hexdigest()


def generate(family: Family, n: int, seed: int, law: str = "train", progress=None,
             shard: tuple[int, int] | None = None, rows: tuple[int, int] | None = None,
             drop_infeasible: bool = False) -> Dataset:
    """Draw n instances from `law` with `seed` and solve them with the family's reference.

    shard (i, k): all n parameters are drawn as without it, and only the i-th of k contiguous
    slices is solved, so the k shards merged in order (`convexop.shards.merge_shards`) equal the
    unsharded set whenever the reference treats instances independently (toy-box, heat-pde): the
    parameters exactly, the targets to round-off (batched linear algebra may round the last bit
    differently with the composition of the batch).

    Instances whose constraints admit no point (`family.infeasible`) are refused with one line giving
    their count and the first index, or dropped with `drop_infeasible` (counted in the attribute
    `dropped_infeasible`); so are instances of user families proven unbounded below
    (`Family.unbounded`: user families with a quadratic objective), counted in `dropped_unbounded`.
    """
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_INSTANCES:
        raise InputError("n", n, f"integers in [1, {MAX_INSTANCES}]")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise InputError("seed", seed, f"integers in [0, {MAX_SEED}]")
    rng = np.random.default_rng(seed)
    params = family.sample(n, rng, law)
    extra: dict[str, Any] = {}
    if shard is not None:
        index, count = shard
        if not (isinstance(count, int) and isinstance(index, int) and 1 <= count <= n and 0 <= index < count):
            raise InputError("shard", f"{index}/{count}", f"i/k with 0 <= i < k <= n = {n}")
        start, stop = index * n // count, (index + 1) * n // count
        params = params[start:stop]
        extra = {"shard_index": index, "shard_count": count, "shard_offset": start, "n_total": n}
    elif rows is not None:  # only the rows [start, stop) of the n drawn are solved (a label-free run's test set)
        start, stop = rows
        params = params[start:stop]
        extra = {"rows_offset": int(start), "n_total": n}
    check_finite_array("sampler", params, (len(params), family.theta_size))
    family.check_theta(params)
    infeasible = family.infeasible(params)
    if infeasible.any() and not drop_infeasible:
        first = int(np.flatnonzero(infeasible)[0])
        raise InputError("sampler", None, "", f"{int(infeasible.sum())} of {len(params)} instances are infeasible "
                         f"(first: instance {first}, a phase-I solve found no point satisfying the constraints); "
                         "draw only feasible instances, or pass --drop-infeasible to leave them out")
    unbounded = family.unbounded(params)
    if unbounded.any() and not drop_infeasible:
        first = int(np.flatnonzero(unbounded)[0])
        raise InputError("sampler", None, "", f"{int(unbounded.sum())} of {len(params)} instances are unbounded "
                         f"below (first: instance {first}, a verified recession direction of the feasible set "
                         "lowers the objective without end); draw only bounded instances, or pass "
                         "--drop-infeasible to leave them out")
    if drop_infeasible:
        params = params[~(infeasible | unbounded)]
        extra["dropped_infeasible"] = int(infeasible.sum())
        extra["dropped_unbounded"] = int(unbounded.sum())
        if not len(params):
            what = "infeasible or unbounded" if unbounded.any() else "infeasible"
            raise InputError("sampler", None, "", f"all {len(infeasible)} instances are {what}")
    targets = np.asarray(family.reference(params, progress=progress))
    check_finite_array("reference", targets, (len(params), len(family.points)))
    attrs = {"family": family.name, "family_config": json.dumps(family.family_config()),
             "version": __version__, "seed": int(seed), "law": law,
             "reference_method": family.reference_method,
             "reference_error": float(family.reference_error())} | extra
    return Dataset(params, np.asarray(targets, dtype=family.target_dtype), np.asarray(family.points), attrs)


def check_real_finite(name: str, array: np.ndarray) -> None:
    """Raise InputError naming `name` and the first bad index unless `array` holds finite real floats."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(name, None, "", f"holds {array.dtype} values; expected real floating-point numbers")
    bad = ~np.isfinite(array)
    if bad.any():
        first = [int(i) for i in np.argwhere(bad)[0]]
        raise InputError(name, None, "", f"holds a non-finite value {float(array[tuple(first)])} at index {first}")


def check_finite_array(name: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    """Raise InputError naming `name` unless `array` is real, of `shape`, and finite; the first bad
    index is given."""
    array = np.asarray(array)
    if array.shape != shape:
        raise InputError(name, None, "", f"returned an array of shape {list(array.shape)}, expected {list(shape)}")
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
        raise InputError(name, None, "", f"returned {array.dtype} values, expected real numbers")
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(name, None, "", f"returned a non-finite value {float(array[first])} at index {list(first)} "
                                         f"(instance {first[0]})")


def check_output_path(path: str | Path, force: bool = False) -> Path:
    """Refuse an output path in a missing or read-only folder, or an existing file without force."""
    if "\x00" in str(path):
        raise InputError("--out", str(path), "", "not a usable path (embedded NUL byte)")
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder_ok, is_folder = folder.is_dir(), path.is_dir()
    except (ValueError, OSError) as error:  # embedded NUL bytes, names too long
        raise InputError("--out", str(path), "", f"not a usable path ({error})") from None
    if not folder_ok:
        raise InputError("--out", str(path), "", f"folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError("--out", str(path), "", f"folder {folder} is not writable")
    if is_folder:
        raise InputError("--out", str(path), "", "is a folder; give a file name")
    if path.exists() and not force:
        raise InputError("--out", str(path), "", "file exists (use --force to overwrite)")
    return path


def write_dataset(path: str | Path, data: Dataset) -> str:
    """Write atomically; returns the sha256 of the arrays (refused when an array is not finite and real)."""
    for name in ("params", "targets", "points"):
        check_real_finite(f"dataset {name}", getattr(data, name))
    path = Path(path)
    digest = array_digest(data.params, data.targets, data.points)
    with atomic_output(path) as tmp, h5py.File(tmp, "w", track_order=True) as h5:
        for name in ("params", "targets", "points"):
            h5.create_dataset(name, data=getattr(data, name), track_times=False)
        for key, value in data.attrs.items():
            h5.attrs[key] = value
        h5.attrs["sha256"] = digest
        h5.attrs["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
    return digest


def read_dataset(path: str | Path, family: Family | None = None) -> Dataset:
    """Read and verify a data set (checksum, and family when given)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("dataset", str(path), "", "file not found")
    try:
        with h5py.File(path, "r") as h5:
            params, targets, points = (np.asarray(h5[k]) for k in ("params", "targets", "points"))
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in h5.attrs.items()}
            for name in ("family", "version", "sha256"):
                if name not in attrs:
                    raise KeyError(name)
            digest = array_digest(params, targets, points)
    except (OSError, KeyError, TypeError, ValueError):  # not HDF5, missing arrays/attributes, non-numeric
        raise InputError("dataset", str(path), "", "not a convexop HDF5 data set") from None
    check_compatible(attrs["version"], f"dataset {path}: version")
    if digest != attrs["sha256"]:
        raise InputError("dataset", str(path), "", "arrays do not match their recorded sha256 "
                         "(tampered, truncated or edited)")
    for name, array in (("params", params), ("targets", targets), ("points", points)):
        check_real_finite(f"{path}: {name}", array)
    if params.ndim != 2 or len(params) != len(targets):
        raise InputError("dataset", str(path), "", f"params of shape {list(params.shape)} do not match "
                         f"targets of shape {list(targets.shape)}")
    if family is not None:
        if attrs["family"] != family.name:
            raise InputError("dataset", str(path), "", f"made for family {attrs['family']}, not {family.name}")
        if params.shape[1] != family.theta_size:
            raise InputError("dataset", str(path), "", f"has {params.shape[1]} parameters per instance; "
                             f"{family.name} has {family.theta_size}")
        stored = attrs.get("family_config")
        if stored is not None and _canonical(stored) != _canonical(json.dumps(family.family_config())):
            raise InputError("dataset", str(path), "", f"made with {family.name} configured as {stored}, "
                             f"not {json.dumps(family.family_config())}")
    return Dataset(params, targets, points, attrs)


def _canonical(config_json: str) -> str:
    try:
        return json.dumps(json.loads(config_json), sort_keys=True)
    except (TypeError, ValueError):
        return str(config_json)
