"""`convexop bench`: the performance targets, measured side by side in one run.

Each case trains (through the same `train_run` as the CLI), scores against references and returns
rows {case, metric, value, target, met, setting}. `run_bench` writes `results.json` and a
human-readable `RESULTS.md` (both atomically). `quick=True` shrinks every budget so the whole
suite runs in a couple of minutes (numbers then only show that the pipeline works).
The cases live in `bench_cases` (heat-pde, equilibrium; the registry) and `bench_exact`.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..errors import InputError
from ..files import atomic_write_bytes
from . import bench_exact  # noqa: F401  (registers the exact-family cases)
from .bench_cases import CASES, Row


def run_bench(out: str | Path, quick: bool = False, only: list[str] | None = None,
              callback: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the chosen cases into `out`; write results.json and RESULTS.md; return the results."""
    names = only or list(CASES)
    for name in names:
        if name not in CASES:
            raise InputError("--only", name, "one of " + ", ".join(CASES))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    rows: list[Row] = []
    timings = {}
    for name in names:
        if callback:
            callback(name)
        started = time.perf_counter()
        rows += CASES[name](out, quick)
        timings[name] = time.perf_counter() - started
    results = {"version": __version__, "quick": quick, "machine": _machine(), "cases": timings, "rows": rows}
    atomic_write_bytes(out / "results.json", json.dumps(results, indent=2, default=float).encode())
    atomic_write_bytes(out / "RESULTS.md", render_markdown(results).encode())
    return results


def _machine() -> str:
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def _fmt(value: Any) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.3g}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.2e}"
    return str(value)


def render_markdown(results: dict[str, Any]) -> str:
    lines = ["# convexop benchmark results", "",
             f"convexop {results['version']}; {results['machine']}; quick={results['quick']}.", "",
             "| case | metric | value | target | met | setting |", "|---|---|---|---|---|---|"]
    for r in results["rows"]:
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['case']} | {r['metric']} | {_fmt(r['value'])} | {r['target'] or ''} | {met} | "
                     f"{r['setting']} |")
    lines += ["", "Case wall times: " + ", ".join(f"{k} {v:.0f} s" for k, v in results["cases"].items()), ""]
    return "\n".join(lines)
