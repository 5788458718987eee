import json
import os
import subprocess
import sys

import h5py
import pytest

from convexop.cli import main

SMALL = ["--set", "steps=20", "--set", "eval_every=10", "--set", "n_instances=60", "--set", "depth=3",
         "--set", "width=5", "--set", "tensorboard=false"]


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_families_lists_parameters_and_domains(capsys):
    code, out, _ = run(["families"], capsys)
    assert code == 0
    assert "heat-pde" in out and "nu: finite numbers in (0, 1]" in out and "toy-box" in out


@pytest.mark.parametrize("argv, field", [
    (["generate", "no-such-family", "--n", "3"], "family"),
    (["generate", "toy-box", "--n", "0"], "--n"),
    (["generate", "toy-box", "--n", "-4"], "--n"),
    (["generate", "toy-box", "--n", "3", "--law", "weird"], "--law"),
])
def test_generate_bad_input(tmp_path, capsys, argv, field):
    out = tmp_path / "d.h5"
    code, _, err = run(argv + ["--out", str(out)], capsys)
    assert code == 2 and field in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.iterdir())


def test_generate_paths_refused(tmp_path, capsys):
    code, _, err = run(["generate", "toy-box", "--n", "3", "--out", str(tmp_path / "missing" / "d.h5")], capsys)
    assert code == 2 and "does not exist" in err
    readonly = tmp_path / "ro"
    readonly.mkdir()
    os.chmod(readonly, 0o500)
    if not os.access(readonly, os.W_OK):  # root ignores permissions
        code, _, err = run(["generate", "toy-box", "--n", "3", "--out", str(readonly / "d.h5")], capsys)
        assert code == 2 and "not writable" in err
    target = tmp_path / "d.h5"
    assert run(["generate", "toy-box", "--n", "3", "--out", str(target)], capsys)[0] == 0
    code, _, err = run(["generate", "toy-box", "--n", "3", "--out", str(target)], capsys)
    assert code == 2 and "--force" in err
    assert run(["generate", "toy-box", "--n", "3", "--out", str(target), "--force"], capsys)[0] == 0


def test_generate_is_deterministic(tmp_path, capsys):
    for name in ("a.h5", "b.h5"):
        assert run(["generate", "toy-box", "--n", "20", "--seed", "7", "--out", str(tmp_path / name)], capsys)[0] == 0
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        assert a.attrs["sha256"] == b.attrs["sha256"]
        assert a.attrs["family"] == "toy-box" and a.attrs["seed"] == 7 and "reference_method" in a.attrs
        assert (a["targets"][()] == b["targets"][()]).all()


def test_train_evaluate_solve_round_trip(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert run(["train", "toy-box", "--out", str(run_dir)] + SMALL, capsys)[0] == 0
    code, _out, _ = run(["evaluate", str(run_dir)], capsys)
    assert code == 0 and json.loads((run_dir / "metrics.json").read_text())["parameters"] == 3 * 2 * (2 + 10 + 1) + 4
    instances = tmp_path / "in.json"
    instances.write_text(json.dumps({"instances": [
        {"A": [[2, 0], [0, 1]], "b": [1, -3], "c": 0, "beta": [0, 0], "kappa": 1}]}))
    answer = tmp_path / "out.json"
    assert run(["solve", str(run_dir), "--instances", str(instances), "--out", str(answer)], capsys)[0] == 0
    result = json.loads(answer.read_text())
    first = result["instances"][0]
    assert set(first) >= {"params", "coefficients", "basis", "points", "values", "objective", "residual", "status"}
    assert first["status"] in ("optimal", "optimal_inaccurate") and first["residual"] >= 0
    assert (first["status"] == "optimal") == (max(first["residual"], first["violation"]) <= 1e-6)
    assert len(first["coefficients"]) == 2 and first["gap"] is None
    # refusals: existing run, unknown key, bad instances, not a run
    code, _, err = run(["train", "toy-box", "--out", str(run_dir)] + SMALL, capsys)
    assert code == 2 and "--resume" in err
    code, _, err = run(["train", "toy-box", "--out", str(tmp_path / "r2"), "--set", "depht=3"], capsys)
    assert code == 2 and "depht" in err and "valid keys" in err
    for payload, field in [("{not json", "--instances"), ('{"instances": [{"nu": 0.1}]}', "nu"),
                           (('{"instances": [{"A": [[1, 2], [0, 1]], "b": [0, 0], "c": 0, "beta": [0, 0], '
                             '"kappa": 1}]}'), "A"),
                           (('{"instances": [{"A": [[1, 0], [0, 1]], "b": [0, 0], "c": 0, "beta": [0, 0], '
                             '"kappa": -1}]}'), "kappa"),
                           ('{"things": []}', "instances")]:
        bad = tmp_path / "bad.json"
        bad.write_text(payload)
        out_file = tmp_path / "never.json"
        code, _, err = run(["solve", str(run_dir), "--instances", str(bad), "--out", str(out_file)], capsys)
        assert code == 2 and field in err and not out_file.exists(), payload
    code, _, err = run(["solve", str(tmp_path), "--instances", str(instances), "--out", str(tmp_path / "x.json")],
                       capsys)
    assert code == 2 and "not a run" in err


def test_subprocess_exit_code_and_single_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "convexop.cli", "generate", "toy-box", "--n", "abc",
                             "--out", str(tmp_path / "d.h5")], check=False, capture_output=True, text=True)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_train_makes_missing_folders_above_the_run_but_not_under_a_file(tmp_path, capsys):
    nested = tmp_path / "runs" / "deeper" / "toy"
    assert run(["train", "toy-box", "--out", str(nested)] + SMALL, capsys)[0] == 0
    assert (nested / "model.safetensors").is_file()
    (tmp_path / "a-file").write_text("x")
    code, _, err = run(["train", "toy-box", "--out", str(tmp_path / "a-file" / "r")] + SMALL, capsys)
    assert code == 2 and "--out" in err and "not a folder" in err
