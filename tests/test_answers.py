"""The answer vocabulary: statuses in CVXPY's words, strict JSON, non-finite answers as `error`,
honest parameter domains, and refusals of non-finite samplers and references."""

import json

import numpy as np
import pytest
import torch

from convexop import data
from convexop.errors import InputError
from convexop.families import get_family
from convexop.models.base import build_model
from convexop.serving.answers import statuses
from convexop.serving.solve import solve_instances
from convexop.solvers.program import Certificate

INSTANCE = {"A": [[2, 0.5], [0.5, 1]], "b": [1, -3], "c": 0, "beta": [0, 0], "kappa": 1}


def _certificate(residual, violation, gap=None):
    t = lambda v: torch.tensor(v, dtype=torch.float64)
    return Certificate(t(residual), t(violation), t([0.0] * len(residual)), None if gap is None else t(gap))


def test_status_is_optimal_only_when_the_whole_measure_is_within_tol():
    finite = np.ones(4, dtype=bool)
    certificate = _certificate([1e-8, 1e-3, 1e-8, float("nan")], [0.0, 0.0, 1e-2, 0.0])
    got = [s for s, _ in statuses(True, certificate, finite, 1e-6)]
    assert got == ["optimal", "optimal_inaccurate", "optimal_inaccurate", "error"]
    # QP duals: the gap (not the residual) with the violation decides
    qp = _certificate([1.0, 1e-9], [1e-9, 1e-3], gap=[1e-9, 1e-9])
    assert [s for s, _ in statuses(True, qp, np.ones(2, dtype=bool), 1e-6)] == ["optimal", "optimal_inaccurate"]
    assert statuses(False, None, np.ones(1, dtype=bool), 1e-6) == [("approximate", "")]
    status, reason = statuses(True, certificate, np.array([False, True, True, True]), 1e-6)[0]
    assert status == "error" and "not finite" in reason


def test_non_finite_model_answers_are_errors_with_null_values_and_strict_json():
    family = get_family("toy-box")
    torch.manual_seed(0)
    model = build_model("geo", family, depth=2, width=3)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    answers = solve_instances(model, [INSTANCE, INSTANCE])
    json.dumps(answers, allow_nan=False)  # raises on a bare NaN
    for answer in answers["instances"]:
        assert answer["status"] == "error" and answer["values"] is None and answer["coefficients"] is None
        assert "not finite" in answer["reason"] and answer["residual"] is None


def test_unbounded_parameter_ends_are_honest_magnitudes():
    family = get_family("toy-box")
    for field, value in [("c", 1e308), ("kappa", 1e308), ("b", [3e38, 0.0])]:
        with pytest.raises(InputError, match=field):
            family.theta_from_instances([INSTANCE | {field: value}])
    assert "1e+06" in family.parameters[2].domain()
    family.theta_from_instances([INSTANCE | {"c": 1e6}])  # the bound itself is inside


def test_generate_refuses_non_finite_sampler_and_reference_draws():
    import convexop

    def sampler(n, rng):
        b = rng.normal(size=(n, 2))
        b[3, 1] = np.nan
        return {"b": b}

    family = convexop.from_torch(lambda x, t: ((x - t["b"]) ** 2).sum(-1), variables=2, parameters={"b": 2},
                                 sampler=sampler)
    with pytest.raises(InputError, match=r"sampler.*non-finite.*index \[3, 1\]"):
        data.generate(family, 10, 0)
    good = convexop.from_torch(lambda x, t: ((x - t["b"]) ** 2).sum(-1), variables=2, parameters={"b": 2},
                               sampler={"b": (-1, 1)},
                               reference=lambda t: torch.full((len(t["b"]), 2), float("inf")))
    with pytest.raises(InputError, match=r"reference.*non-finite"):
        data.generate(good, 5, 0)
    outside = convexop.from_torch(lambda x, t: ((x - t["b"]) ** 2).sum(-1), variables=2,
                                  parameters={"b": 2}, sampler=lambda n, rng: {"b": np.full((n, 2), 1e7)})
    with pytest.raises(InputError, match=r"sampler.*b outside its domain.*instance 0"):
        data.generate(outside, 5, 0)


def test_generate_refuses_infeasible_qp_instances_naming_the_count_and_first_index():
    cp = pytest.importorskip("cvxpy")
    import convexop

    p = cp.Variable(4, name="p")
    demand = cp.Parameter(name="demand")
    problem = cp.Problem(cp.Minimize(cp.sum_squares(p)), [cp.sum(p) == demand, p >= 0, p <= 1])
    family = convexop.from_cvxpy(problem, lambda n, rng: {
        "demand": np.where(np.isin(np.arange(n), (3, 6)), 7.0, rng.uniform(0.5, 3.5, n))})  # capacity is 4
    with pytest.raises(InputError, match=r"2 of 10 instances are infeasible.*first: instance 3"):
        data.generate(family, 10, 0)
    feasible = convexop.from_cvxpy(problem, lambda n, rng: {"demand": rng.uniform(0.5, 3.5, n)})
    assert np.isfinite(data.generate(feasible, 10, 0).targets).all()


def test_fuzz_in_domain_extremes_always_give_strict_answers_from_the_vocabulary():
    """Hypothesis: toy-box instances anywhere in their (honest) domains, extreme magnitudes included,
    through `solve` with and without polish: strict JSON, a status from the vocabulary, and every
    answer either finite or `error` with null values."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from convexop.serving.answers import STATUSES

    family = get_family("toy-box")
    torch.manual_seed(0)
    model = build_model("geo", family, depth=3, width=4, init="forward-backward", step=0.2)
    big = st.floats(-1e6, 1e6, allow_nan=False)
    entries = st.floats(-1e3, 1e3, allow_nan=False)
    instances = st.builds(
        lambda g, b, c, beta, kappa: {"A": (np.array(g).reshape(2, 2).T @ np.array(g).reshape(2, 2)).tolist(),
                                      "b": b, "c": c, "beta": beta, "kappa": kappa},
        st.lists(entries, min_size=4, max_size=4), st.lists(big, min_size=2, max_size=2), big,
        st.lists(big, min_size=2, max_size=2), st.floats(1e-300, 1e6))
    seen: dict[str, int] = {}

    @settings(max_examples=200, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(instances, min_size=1, max_size=3), st.booleans())
    def check(batch, polish):
        try:
            answers = solve_instances(model, batch, polish_tol=1e-6 if polish else None, polish_iterations=50)
        except InputError as error:  # e.g. an A that is not PSD after rounding: one line
            assert "\n" not in str(error)
            seen["refused"] = seen.get("refused", 0) + 1
            return
        json.dumps(answers, allow_nan=False)
        for answer in answers["instances"]:
            seen[answer["status"]] = seen.get(answer["status"], 0) + 1
            assert answer["status"] in STATUSES and answer["status"] != "approximate"
            if answer["status"] == "error":
                assert answer["values"] is None and answer["coefficients"] is None and answer["reason"]
            else:
                assert np.isfinite(answer["values"]).all() and answer["residual"] is not None

    check()
    assert sum(seen.values()) >= 200 and seen.get("optimal", 0) > 0, seen


def test_non_finite_data_sets_and_weights_are_refused_even_with_a_recomputed_hash(tmp_path):
    import hashlib

    import h5py
    from safetensors.torch import load_file, save_file

    from convexop.models.base import from_checkpoint, save_model

    family = get_family("toy-box")
    dataset = data.generate(family, 10, 0)
    dataset.targets[3, 1] = np.nan
    with pytest.raises(InputError, match=r"targets.*non-finite value nan at index \[3, 1\]"):
        data.write_dataset(tmp_path / "nan.h5", dataset)
    dataset.targets[3, 1] = 0.0
    data.write_dataset(tmp_path / "ok.h5", dataset)
    with h5py.File(tmp_path / "ok.h5", "r+") as h5:  # tampered, with the digest recomputed to match
        targets = h5["targets"][()]
        targets[2, 0] = np.inf
        h5["targets"][...] = targets
        h5.attrs["sha256"] = data.array_digest(h5["params"][()], targets, h5["points"][()])
    with pytest.raises(InputError, match=r"targets.*non-finite value inf at index \[2, 0\]"):
        data.read_dataset(tmp_path / "ok.h5", family)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_model(build_model("geo", family, depth=2, width=3), run_dir)
    weights = load_file(str(run_dir / "model.safetensors"))
    weights["A"][0, 0, 0] = float("nan")
    save_file(weights, str(run_dir / "model.safetensors"))
    meta = json.loads((run_dir / "model.json").read_text())
    meta["weights_sha256"] = hashlib.sha256((run_dir / "model.safetensors").read_bytes()).hexdigest()
    (run_dir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="tensor A holds non-finite values"):
        from_checkpoint(run_dir, family=family)
