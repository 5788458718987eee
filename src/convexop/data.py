"""HDF5 data sets: one file per split with `params`, `targets`, `points` and provenance attributes.

Files are written to a temporary name and renamed, so a crash never leaves a half-written set; the
sha256 of the arrays is stored and checked on reading. Same family, law and seed give the same arrays.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from . import __version__
from .errors import InputError
from .families import Family


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


def generate(family: Family, n: int, seed: int, law: str = "train", progress=None) -> Dataset:
    """Draw n instances from `law` with `seed` and solve them with the family's reference."""
    if not isinstance(n, int) or n < 1:
        raise InputError("n", n, "integers >= 1")
    rng = np.random.default_rng(seed)
    params = family.sample(n, rng, law)
    targets = family.reference(params, progress=progress)
    attrs = {"family": family.name, "family_config": json.dumps(family.family_config()),
             "version": __version__, "seed": int(seed), "law": law,
             "reference_method": family.reference_method,
             "reference_error": float(family.reference_error())}
    dtype = getattr(family, "target_dtype", np.float64)  # large path-wise targets may use float32
    return Dataset(params, np.asarray(targets, dtype=dtype), np.asarray(family.points), attrs)


def check_output_path(path: str | Path, force: bool = False) -> Path:
    """Refuse an output path in a missing or read-only folder, or an existing file without force."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError("--out", str(path), "", f"folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError("--out", str(path), "", f"folder {folder} is not writable")
    if path.exists() and not force:
        raise InputError("--out", str(path), "", "file exists (use --force to overwrite)")
    return path


def write_dataset(path: str | Path, data: Dataset) -> str:
    """Write atomically; returns the sha256 of the arrays."""
    path = Path(path)
    digest = array_digest(data.params, data.targets, data.points)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        with h5py.File(tmp, "w", track_order=True) as h5:
            for name in ("params", "targets", "points"):
                h5.create_dataset(name, data=getattr(data, name), track_times=False)
            for key, value in data.attrs.items():
                h5.attrs[key] = value
            h5.attrs["sha256"] = digest
            h5.attrs["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
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
    except (OSError, KeyError):
        raise InputError("dataset", str(path), "", "not a convexop HDF5 data set") from None
    if array_digest(params, targets, points) != attrs.get("sha256"):
        raise InputError("dataset", str(path), "", "arrays do not match their recorded sha256")
    if family is not None and attrs.get("family") != family.name:
        raise InputError("dataset", str(path), "", f"made for family {attrs.get('family')}, not {family.name}")
    return Dataset(params, targets, points, attrs)
