"""`convexop bench`: the performance targets, measured side by side in one run.

Each case trains (through the same `train_run` as the CLI), scores against references and returns
rows {case, metric, value, target, met, setting}. `run_bench` runs the cases on one thread
(`torch.set_num_threads(1)`: every timing is single-thread, comparable across cases and machines)
and writes `results.json` and a human-readable `RESULTS.md` into `out` (both atomically), with the
machine described and the plots of each case linked. `quick=True` shrinks every budget so that the
whole suite runs in well under 30 minutes on a 2-core CPU (the numbers then show the pipeline and
the orders of magnitude, not the full-budget accuracy).

A complete quick run (`convexop bench --quick`, no `--only`) from a source checkout also publishes
its report: RESULTS.md at the repository root, benchmarks/results/results-quick.json and the plots
under benchmarks/results/quick/ (`publish`).

The registry (`@case`, `row`, the shared training helper) is `cases`; the cases themselves live in
`heat` (heat-pde, equilibrium), `exact` (toy-box, elliptic-pde, depth sweep), `solvers` (time to
accuracy), `throughput` (throughput, FLOPs), `sizes` (accuracy against parameter count) and `sweeps`
(width, rank, toy-box depth), and join the registry when `load_cases` imports them.
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..files import atomic_write_bytes
from ..version import __version__
from .cases import CASES, Row

QUICK_JSON = "results-quick.json"
# the modules that define cases, in run and report order (time-to-accuracy, in `solvers`, trains the GEOs
# that throughput and flops reuse)
CASE_MODULES = ("heat", "exact", "sizes", "solvers", "sweeps", "throughput")


def load_cases() -> dict[str, Callable[[Path, bool], list[Row]]]:
    """The registry with every case of `convexop bench`: imports each module of CASE_MODULES (the one
    place that lists them; their `@case` decorators register the cases, in this order) and returns
    `cases.CASES`. Idempotent: a module is imported once."""
    for module in CASE_MODULES:
        importlib.import_module(f"{__package__}.{module}")
    return CASES


def run_bench(out: str | Path, quick: bool = False, only: list[str] | None = None,
              callback: Callable[[str], None] | None = None, threads: int = 1,
              publish: bool | None = None) -> dict[str, Any]:
    """Run the chosen cases into `out` on `threads` threads; write results.json and RESULTS.md; return
    the results. publish (default: a complete quick run inside a source checkout) also writes the
    report to the repository (see the module docstring)."""
    cases = load_cases()
    names = only or list(cases)
    for name in names:
        if name not in cases:
            raise InputError("--only", name, "one of " + ", ".join(cases))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        machine = machine_description()
        rows: list[Row] = []
        timings, figures = {}, {}
        for name in names:
            if callback:
                callback(name)
            started, stamp = time.perf_counter(), time.time()
            rows += cases[name](out, quick)
            timings[name] = time.perf_counter() - started
            figures[name] = _figures(out, stamp)
        machine["load_average_end"] = _load()
    finally:
        torch.set_num_threads(previous_threads)
    command = "convexop bench" + (" --quick" if quick else "") + (f" --only {','.join(only)}" if only else "")
    results = {"version": __version__, "quick": quick, "date": datetime.date.today().isoformat(), "command": command,
               "machine": machine, "cases": timings, "figures": figures, "rows": rows}
    atomic_write_bytes(out / "results.json", json.dumps(results, indent=2, default=float).encode())
    atomic_write_bytes(out / "RESULTS.md", render_markdown(results).encode())
    root = repository_root()
    if (quick and only is None and root is not None) if publish is None else publish:
        results["published"] = publish_report(results, out, root or Path.cwd())
    return results


def _figures(out: Path, since: float) -> list[str]:
    """The figures written into `out` since the time stamp `since` (the plots of one case)."""
    return sorted(p.name for p in out.glob("*.png") if p.stat().st_mtime >= since - 1e-3)


def repository_root() -> Path | None:
    """The source checkout this package runs from (editable install), else None."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "pyproject.toml").is_file() and (root / "src" / "convexop").is_dir() else None


def publish_report(results: dict[str, Any], out: Path, root: Path) -> list[str]:
    """Write root/RESULTS.md, root/benchmarks/results/results-quick.json (or results-full.json) and
    copy the figures to root/benchmarks/results/quick/ (or full/); returns the written paths."""
    kind = "quick" if results["quick"] else "full"
    folder = root / "benchmarks" / "results"
    figures = folder / kind
    figures.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sorted({f for files in results["figures"].values() for f in files}):
        shutil.copyfile(out / name, figures / name)
        written.append(str(figures / name))
    target = folder / (QUICK_JSON if kind == "quick" else "results-full.json")
    atomic_write_bytes(target, json.dumps(results, indent=2, default=float).encode())
    report = root / "RESULTS.md"
    text = render_markdown(results, figure_prefix=f"benchmarks/results/{kind}/") + script_results(folder)
    atomic_write_bytes(report, text.encode())
    return written + [str(target), str(report)]


def script_results(folder: Path) -> str:
    """A section linking the full-budget bench reports and the benchmarks that run as scripts (too
    long for --quick: the qp-dc3 GEO trains 13 minutes), so RESULTS.md points at every result."""
    reports = sorted(folder.glob("RESULTS-*.md"))
    if not reports:
        return ""
    lines = ["", "## Longer runs and scripts (each file gives its command and settings)", ""]
    for path in reports:
        title = next((line.lstrip("# ").strip() for line in path.read_text().splitlines() if line.startswith("#")),
                     path.stem)
        if title == "convexop benchmark results":  # a full-budget `convexop bench --only ...` report
            title = f"full-budget `convexop bench` run: {path.stem.removeprefix('RESULTS-')}"
        lines.append(f"- [{path.name}](benchmarks/results/{path.name}): {title}")
    scripts = {"examples.json": "worked examples of the bring-your-own-family front "
                                "(`python examples/NAME.py --steps 2000`)",
               "polish-newton.json": "active-set Newton polish against warm and cold FISTA "
                                     "(`python benchmarks/polish_newton.py`)",
               "label-free.json": "label-free (loss=objective) against supervised training at equal wall time "
                                  "(`python benchmarks/label_free.py`)",
               "noisy-labels.json": "supervised training with noisy labels, and label-free "
                                    "(`python benchmarks/noisy_labels.py`)"}
    for name, description in scripts.items():
        if (folder / name).is_file():
            lines.append(f"- [{name}](benchmarks/results/{name}): {description}")
    for path in reports:  # each script's targets (or its first table), so RESULTS.md carries the figures
        table = headline_table(path.read_text())
        if table and not path.read_text().startswith("# convexop benchmark results"):
            lines += ["", f"### {path.stem.removeprefix('RESULTS-')} ([{path.name}](benchmarks/results/{path.name}))",
                      "", *table]
    return "\n".join(lines) + "\n"


def headline_table(markdown: str) -> list[str]:
    """The lines of the table under a report's "## Targets" heading, else of its first table."""
    lines = markdown.splitlines()
    start = next((k for k, line in enumerate(lines) if line.strip() == "## Targets"), 0)
    rows = []
    for line in lines[start:]:
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break
    return rows


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> dict[str, Any]:
    return {"cpu": _cpu_name(), "logical_cpus": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "load_average_start": _load()}


def describe_machine(machine: dict[str, Any] | str) -> str:
    if isinstance(machine, str):
        return machine
    text = (f"{machine['cpu']}, {machine['logical_cpus']} logical CPUs, {machine['platform']}, "
            f"Python {machine['python']}, torch {machine['torch']}; **{machine['threads']} thread** per run")
    if machine.get("load_average_start"):
        text += (f"; load average (1, 5, 15 min) {machine['load_average_start']} at the start, "
                 f"{machine.get('load_average_end')} at the end (other jobs share this machine)")
    return text


def format_value(value: Any) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        if not np.isfinite(value):
            return str(value)
        return f"{value:.3g}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.2e}"
    return str(value)


def _met(r: Row) -> str:
    return "" if r["met"] is None else ("yes" if r["met"] else "**no**")


def _summary(function) -> str:
    """The first paragraph of a case's docstring, on one line."""
    text = (function.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(line.strip() for line in text.splitlines())


def render_markdown(results: dict[str, Any], figure_prefix: str = "") -> str:
    cases_by_name = load_cases()  # each case's summary is its docstring
    quick = results["quick"]
    lines = ["# convexop benchmark results", "",
             f"Generated by `{results.get('command', 'convexop bench')}` (convexop {results['version']}"
             + (f", {results['date']}" if results.get("date") else "") + ").", "",
             (f"**Machine**: {describe_machine(results['machine'])}. All timings are wall-clock seconds on "
              "one thread (`torch.set_num_threads(1)`)."), ""]
    if quick:
        lines += [("`--quick`: every training budget is cut (100-1,000 steps instead of 1,000-6,000), so "
                   "accuracies are those of short runs; timings and ratios are measured side by side in this "
                   "one run."), ""]
    targets = [r for r in results["rows"] if r["met"] is not None]
    if targets:
        lines += ["## Targets", "", "| case | metric | value | target | met |", "|---|---|---|---|---|"]
        lines += [f"| {r['case']} | {r['metric']} | {format_value(r['value'])} | {r['target'] or ''} | {_met(r)} |"
                  for r in targets]
        lines += ["", f"{sum(1 for r in targets if r['met'])} of {len(targets)} targets met.", ""]
    cases: dict[str, list[Row]] = {}
    for r in results["rows"]:
        cases.setdefault(r["case"].split(" (")[0], []).append(r)
    lines += ["## Results by case", ""]
    for name, rows in cases.items():
        lines += [f"### {name}", ""]
        if name in cases_by_name and _summary(cases_by_name[name]):
            lines += [_summary(cases_by_name[name]), ""]
        lines += ["| metric | value | target | met | setting |", "|---|---|---|---|---|"]
        for r in rows:
            metric = r["metric"] if r["case"] == name else f"{r['case'][len(name):].strip()} {r['metric']}"
            value = format_value(r["value"])
            lines.append(f"| {metric} | {value} | {r['target'] or ''} | {_met(r)} | {r['setting']} |")
        for figure in results.get("figures", {}).get(name, []):
            lines += ["", f"![{figure}]({figure_prefix}{figure})"]
        lines.append("")
    lines += ["Case wall times: " + ", ".join(f"{k} {v:.0f} s" for k, v in results["cases"].items())
              + f" (total {sum(results['cases'].values()) / 60:.1f} min).", ""]
    return "\n".join(lines)
