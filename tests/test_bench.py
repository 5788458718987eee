"""`convexop bench`: cases run, targets are judged, results.json and RESULTS.md are written."""

import json

import numpy as np
import pytest

from convexop.bench.runner import load_cases, render_markdown, run_bench
from convexop.cli import main
from convexop.errors import InputError


def test_quick_toy_box_bench_writes_results(tmp_path):
    results = run_bench(tmp_path, quick=True, only=["toy-box"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(results["rows"]))
    metrics = {r["metric"]: r for r in saved["rows"]}
    # a zero predictor scores 2.0 out of distribution; even 300 steps must beat it clearly
    assert metrics["test squared error (d * MSE) out of distribution"]["value"] < 1.5
    throughput = metrics["GEO / CVXPY throughput"]
    assert throughput["met"] == (throughput["value"] >= 100)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| toy-box | GEO / CVXPY throughput |" in text


def test_markdown_marks_missed_targets():
    results = {"version": "x", "machine": "m", "quick": False, "cases": {"c": 1.0},
               "rows": [{"case": "c", "metric": "m", "value": 3.0, "target": "<= 1", "met": False, "setting": ""}]}
    assert "**no**" in render_markdown(results)


def test_unknown_case_is_refused(tmp_path, capsys):
    with pytest.raises(InputError):
        run_bench(tmp_path, only=["nope"])
    assert main(["bench", "--only", "nope", "--out", str(tmp_path / "b")]) == 2
    assert "--only" in capsys.readouterr().err
    assert set(load_cases()) >= {"heat-pde-paper", "heat-pde-best", "toy-box", "equilibrium-vs-unrolled",
                                 "elliptic-pde", "log-complexity"}


def test_log_linear_fit_recovers_a_geometric_rate():
    from convexop.bench.exact import log_linear_fit

    slope, r2 = log_linear_fit([1, 2, 4, 8], [0.5 ** 1, 0.5 ** 2, 0.5 ** 4, 0.5 ** 8])
    assert abs(slope - np.log(0.5)) < 1e-12 and abs(r2 - 1) < 1e-12
    slope, _ = log_linear_fit([1, 2, 3], [1.0, 2.0, 4.0])
    assert slope > 0
