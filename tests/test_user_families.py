"""Families from user code: from_torch, FILE.py:NAME on the command line, entry points, the examples."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CLIPPED_FAMILY as FAMILY_FILE

from convexop import api, from_torch
from convexop.cli import main
from convexop.errors import InputError
from convexop.families import get_family
from convexop.prox import Box

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"



def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "convexop", *args], check=False, cwd=cwd, capture_output=True,
                          text=True)


def test_from_torch_box_program_has_its_closed_form():
    family = from_torch(lambda x, t: 0.5 * ((x - t["c"]) ** 2).sum(-1) + 0.1 * (x ** 2).sum(-1), Box(-0.5, 0.5),
                        variables=3, parameters={"c": 3}, sampler={"c": (-1.0, 1.0)},
                        lipschitz=lambda t: torch.full((len(t["c"]),), 1.2))
    theta = family.sample(16, np.random.default_rng(0))
    assert family.parameters[0].domain() == "array of shape [3] of finite numbers in [-1, 1]"
    np.testing.assert_allclose(family.reference(theta), np.clip(theta / 1.2, -0.5, 0.5), atol=1e-9)
    assert family.step_hint == pytest.approx(1 / 1.2)
    with pytest.raises(InputError, match="expected shape \\[64, 3\\], got \\[64, 2\\]"):  # at the first draw
        from_torch(lambda x, t: x.sum(-1), None, variables=3, parameters={"c": 3},
                   sampler=lambda n, rng: {"c": np.zeros((n, 2))})


def test_family_file_through_the_cli_and_changed_file_refused(tmp_path):
    (tmp_path / "fam.py").write_text(FAMILY_FILE)
    run = _cli("train", "fam.py:family", "--out", "run", "--set", "steps=30", "--set", "n_instances=100",
               "--set", "eval_every=10", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["family"] == f"{tmp_path / 'fam.py'}:family" and len(config["family_config"]["file_sha256"]) == 64
    (tmp_path / "in.json").write_text(json.dumps({"instances": [{"c": [0.9, -0.2, 0.1]}]}))
    solved = _cli("solve", "run", "--instances", "in.json", "--out", "out.json", "--polish", "1e-8", cwd=tmp_path)
    assert solved.returncode == 0, solved.stderr
    answer = json.loads((tmp_path / "out.json").read_text())["instances"][0]
    assert answer["status"] == "optimal" and answer["residual"] <= 1e-8 and answer["violation"] <= 1e-8
    np.testing.assert_allclose(answer["variables"]["x"], np.clip(np.array([0.9, -0.2, 0.1]) / 1.2, -0.5, 0.5),
                               atol=1e-7)
    (tmp_path / "bad.json").write_text(json.dumps({"instances": [{"c": [0.9, -0.2]}]}))
    bad = _cli("solve", "run", "--instances", "bad.json", "--out", "out2.json", cwd=tmp_path)
    assert bad.returncode == 2 and "instances[0].c" in bad.stderr and "expected [3], got [2]" in bad.stderr
    with open(tmp_path / "fam.py", "a") as handle:
        handle.write("# edited\n")
    changed = _cli("solve", "run", "--instances", "in.json", "--out", "out3.json", cwd=tmp_path)
    assert changed.returncode == 2 and "file changed" in changed.stderr and len(changed.stderr.splitlines()) == 1
    assert not (tmp_path / "out3.json").exists()
    missing = _cli("generate", "fam.py:nothing", "--n", "3", "--out", "d.h5", cwd=tmp_path)
    assert missing.returncode == 2 and "defines no 'nothing'" in missing.stderr


def test_entry_point_discovery(tmp_path, monkeypatch):
    (tmp_path / "tinyfam.py").write_text(FAMILY_FILE)
    info = tmp_path / "tinyfam-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyfam\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[convexop.families]\ntiny = tinyfam:family\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    family = get_family("tiny")
    assert family.name == "tiny" and family.rank == 3
    listing = subprocess.run([sys.executable, "-m", "convexop", "families"], check=False, capture_output=True,
                             text=True, env={"PYTHONPATH": f"{tmp_path}:{ROOT / 'src'}", "PATH": "/usr/bin:/bin"})
    assert listing.returncode == 0 and "tiny  [exact convex program; rank 3" in listing.stdout
    with pytest.raises(InputError, match="FILE.py:NAME"):
        get_family("no-such-family")


def _cvxpy_optimum(family, instance):
    """CVXPY's optimal value of one instance of a from_cvxpy family (Clarabel, tight tolerances)."""
    for p in family.cvx_parameters:
        p.value = np.asarray(instance[p.name()], dtype=np.float64)
    family.problem.solve(solver="CLARABEL", tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11)
    return family.problem.value


@pytest.mark.parametrize("example", ["lasso", "mpc", "markowitz", "dc3_qp"])
def test_worked_examples_train_and_polish(example, tmp_path):
    family = get_family(f"{EXAMPLES / example}.py:family")
    steps = 30 if example == "dc3_qp" else 60
    report = api.train_and_assess(family, tmp_path / "run", n=20, steps=steps, n_instances=200, eval_every=30)
    assert report["warm_converged"] == 1.0 and report["cold_iterations"] > 0
    assert np.isfinite(report["mean_relative_gap"])
    assert report["mean_relative_gap"] < (2.0 if example == "dc3_qp" else 0.5)
    model = api.load(tmp_path / "run", family)
    theta = family.sample(2, np.random.default_rng(5))
    instances = [family.instance_from_theta(row) for row in theta]
    out = api.solve(model, instances, polish=1e-8)
    assert [a["status"] for a in out["instances"]] == ["optimal", "optimal"]
    names = {n for n, _ in getattr(family, "primal_layout", family.layout)}
    # the certificate measure: max(gap (QP duals) or residual, violation)
    measure = [max(a["residual"] if a["gap"] is None else a["gap"], a["violation"]) for a in out["instances"]]
    assert all(m <= 1e-8 for m in measure) and all(set(a["variables"]) == names for a in out["instances"])
    if hasattr(family, "problem"):  # from_cvxpy: the polished answers reproduce CVXPY's optimum
        for instance, answer in zip(instances, out["instances"]):
            optimum = _cvxpy_optimum(family, instance)
            assert abs(answer["objective"] - optimum) <= 1e-6 * max(1.0, abs(optimum))


def test_api_load_accepts_the_family_object_a_file_run_was_trained_on(tmp_path):
    """`convexop train FILE.py:family` then, in Python, `api.load(run, module.family)` with the same
    object imported from that file: accepted; a family with other variables is refused."""
    import importlib.util

    (tmp_path / "fam.py").write_text(FAMILY_FILE)
    run_dir = tmp_path / "run"
    assert main(["train", f"{tmp_path / 'fam.py'}:family", "--out", str(run_dir), "--set", "steps=5",
                 "--set", "n_instances=20", "--set", "eval_every=5", "--set", "tensorboard=false"]) == 0
    spec = importlib.util.spec_from_file_location("fam_module", tmp_path / "fam.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = api.load(run_dir, module.family)
    answers = api.solve(model, [{"c": [0.9, -0.2, 0.1]}], polish=1e-8)["instances"]
    assert answers[0]["status"] == "optimal" and len(answers[0]["variables"]["x"]) == 3
    other = from_torch(lambda x, t: ((x - t["c"]) ** 2).sum(-1), variables={"y": 3}, parameters={"c": 3},
                                sampler={"c": (-1.0, 1.0)})
    with pytest.raises(InputError, match="variables or parameters differ"):
        api.load(run_dir, other)


def test_without_a_lipschitz_bound_the_step_comes_from_the_estimated_curvature():
    from convexop.solvers.program import curvature

    rng = np.random.default_rng(2)
    q = torch.as_tensor(rng.normal(size=(5, 5)))
    hessian = q @ q.T + 0.5 * torch.eye(5, dtype=torch.float64)
    top = float(torch.linalg.eigvalsh(hessian)[-1])
    quadratic = lambda x: 0.5 * ((x @ hessian) * x).sum(-1)
    estimate = curvature(quadratic, torch.randn(3, 5, dtype=torch.float64), iterations=100)
    assert torch.allclose(estimate, torch.full((3,), top, dtype=torch.float64), rtol=1e-6)
    # a family with no bound: its GEO initialisation step is 1 / that curvature (was 1)
    family = from_torch(lambda x, theta: 0.5 * ((x @ hessian.to(x)) * x).sum(-1) - (theta["c"] * x).sum(-1),
                        Box(-1.0, 1.0), variables={"x": 5}, parameters={"c": 5}, sampler={"c": (-1.0, 1.0)})
    assert abs(family.step_hint * top - 1) < 1e-3
