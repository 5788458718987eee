"""`convexop bench` runner and report: one thread, machine description, figures, publishing, and the
accuracy-against-size and sweep helpers."""

import json

import numpy as np
import pytest
import torch

from convexop.bench import runner
from convexop.bench.cases import CASES, row
from convexop.bench.runner import publish_report, render_markdown, run_bench
from convexop.bench.sizes import prepare_shared, verdict
from convexop.bench.sweeps import errors_of, fit_rows, sweep_plot
from convexop.families import get_family
from convexop.models import build_model


def _fake_case(seen):
    def fake(out, quick):
        """A fake case: records the thread count and writes one figure.

        Second paragraph, not in the report."""
        seen.append(torch.get_num_threads())
        sweep_plot([1, 2, 3], {"error": [1.0, 0.1, 0.01]}, "error", "size", out / "fake.png")
        return [row("fake", "ratio", 3.0, ">= 5", False, "tiny"), row("fake", "seconds", 0.5)]
    return fake


def test_run_bench_uses_one_thread_and_publishes_the_report(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setitem(CASES, "fake", _fake_case(seen))
    torch.set_num_threads(2)
    try:
        results = run_bench(tmp_path / "out", quick=True, only=["fake"], publish=False)
        assert seen == [1] and torch.get_num_threads() == 2  # one thread inside, restored after
    finally:
        torch.set_num_threads(1)
    assert "published" not in results and results["figures"] == {"fake": ["fake.png"]}
    machine = results["machine"]
    assert machine["threads"] == 1 and machine["logical_cpus"] >= 1 and machine["cpu"]
    text = (tmp_path / "out" / "RESULTS.md").read_text()
    assert "**1 thread** per run" in text and "![fake.png](fake.png)" in text
    assert "| fake | ratio | 3 | >= 5 | **no** |" in text  # the targets table
    assert "A fake case: records the thread count and writes one figure." in text
    assert "Second paragraph" not in text
    written = publish_report(results, tmp_path / "out", tmp_path / "repo")
    root_report = (tmp_path / "repo" / "RESULTS.md").read_text()
    assert "![fake.png](benchmarks/results/quick/fake.png)" in root_report
    saved = json.loads((tmp_path / "repo" / "benchmarks" / "results" / "results-quick.json").read_text())
    assert saved["rows"][0]["metric"] == "ratio" and saved["machine"]["threads"] == 1
    assert (tmp_path / "repo" / "benchmarks" / "results" / "quick" / "fake.png").is_file()
    assert len(written) == 3


def test_only_runs_do_not_publish_by_default(tmp_path, monkeypatch):
    monkeypatch.setitem(CASES, "fake", _fake_case([]))
    monkeypatch.setattr(runner, "repository_root", lambda: tmp_path / "repo")
    results = run_bench(tmp_path / "out", quick=True, only=["fake"])
    assert "published" not in results and not (tmp_path / "repo" / "RESULTS.md").exists()


def test_render_accepts_a_machine_string_and_infinite_values():
    results = {"version": "x", "machine": "m", "quick": False, "cases": {"c": 1.0},
               "rows": [{"case": "c", "metric": "crossover", "value": float("inf"), "target": "> 1", "met": True,
                         "setting": ""}]}
    text = render_markdown(results)
    assert "| c | crossover | inf | > 1 | yes |" in text and "1 of 1 targets met" in text


def test_verdict_compares_the_geo_with_a_tenth_of_the_best_baseline():
    results = [{"model": "mlp", "parameters": 100_000, "mse": 1e-3},
               {"model": "fno", "parameters": 10_000, "mse": 5e-4},
               {"model": "geo", "parameters": 900, "mse": 4e-4},
               {"model": "geo", "parameters": 1_200, "mse": 1e-4}]
    v = verdict(results)
    assert v["best"]["model"] == "fno" and v["geo"]["parameters"] == 900  # 1,200 > 10,000 / 10
    assert v["met"] and v["ratio"] == pytest.approx(0.8)
    results[2]["mse"] = 6e-4
    assert not verdict(results)["met"]
    assert verdict(results[:2])["geo"] is None and verdict(results[:2])["ratio"] == float("inf")


def test_shared_data_sets_are_generated_once(tmp_path, monkeypatch):
    from convexop.bench import sizes
    from convexop.training import run

    monkeypatch.setattr(sizes, "_DATA", {})
    calls = []
    original = run.datasets.generate
    monkeypatch.setattr(run.datasets, "generate", lambda *a, **k: calls.append(1) or original(*a, **k))
    settings = {"n_instances": 20, "steps": 1}
    prepare_shared(tmp_path / "a", "toy-box", "geo", settings)
    prepare_shared(tmp_path / "b", "toy-box", "mlp", dict(settings, width=4))
    assert len(calls) == 1
    from convexop.data import read_dataset

    a, b = read_dataset(tmp_path / "a" / "test.h5"), read_dataset(tmp_path / "b" / "test.h5")
    assert np.array_equal(a.params, b.params) and np.array_equal(a.targets, b.targets)


def test_sweep_errors_and_fit():
    family = get_family("toy-box")
    model = build_model("geo", family, depth=2, width=4, init="forward-backward", step=0.2)
    model.eval()
    model.set_inference(start="zero")
    theta = family.sample(20, np.random.default_rng(0))
    optimum = family.in_basis_optimum(theta)
    e = errors_of(model, theta, optimum)
    assert e["optimum"] > 0 and e["reference"] == pytest.approx(e["optimum"], rel=1e-5) and e["floor"] < 1e-20
    rows = fit_rows("s", "depth L", [1, 2, 4], [1e-1, 1e-2, 1e-4], "x")
    assert rows[0]["value"] == pytest.approx(np.log(0.1)) and rows[0]["met"] and rows[1]["value"] == pytest.approx(1)
    flat = fit_rows("s", "width M", [16, 20, 24, 32], [1.0e-4, 0.9e-4, 1.1e-4, 0.95e-4], "x")
    assert flat[0]["value"] < 0 and flat[1]["value"] < 0.8 and not flat[0]["met"]  # noise, not a geometric fall


def test_results_md_links_longer_runs_and_scripts(tmp_path):
    from convexop.bench.runner import script_results

    assert script_results(tmp_path) == ""
    (tmp_path / "RESULTS-qp-dc3.md").write_text("# qp-dc3: GEO on a QP\n\n| a |\n")
    (tmp_path / "examples.json").write_text("{}")
    text = script_results(tmp_path)
    assert "[RESULTS-qp-dc3.md](benchmarks/results/RESULTS-qp-dc3.md): qp-dc3: GEO on a QP" in text
    assert "examples.json" in text and "polish-newton.json" not in text


def test_script_reports_carry_their_target_table_into_results_md(tmp_path):
    from convexop.bench.runner import headline_table, script_results

    first = "# a\n\n| x | y |\n|---|---|\n| 1 | 2 |\n\n## Targets\n\n| target | met |\n|---|---|\n| t | yes |\n"
    assert headline_table(first) == ["| target | met |", "|---|---|", "| t | yes |"]
    assert headline_table("# b\n\ntext\n| only | table |\n|---|---|\n\nafter") == ["| only | table |", "|---|---|"]
    (tmp_path / "RESULTS-demo.md").write_text(first)
    text = script_results(tmp_path)
    assert "[RESULTS-demo.md](benchmarks/results/RESULTS-demo.md)" in text and "| t | yes |" in text
