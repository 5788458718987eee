"""The width paper's two added experiments: Hessian block norms (studies/hessian.py) and the neighbourhood
radius against width (studies/radius.py, `convexop study radius`)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.func import functional_call

from convexop.cli import main
from convexop.families import get_family
from convexop.models.base import build_model
from convexop.studies.hessian import block_spectral_norms, parameter_blocks
from convexop.studies.radius import bisect_threshold, fit_power_law

TINY = {"deeponet": ({"width": 3, "depth": 2, "activation": "tanh", "scaling": "ntk"}, torch.float64),
        # the FNO's cached DFT matrices are float32, so its tiny model stays in float32
        "fno": ({"width": 3, "modes": 3, "depth": 2, "activation": "gelu", "scaling": "ntk"}, torch.float32)}


class _Values(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, theta):
        return self.model.values(theta)


def _tiny_problem(name: str):
    """A tiny model on antiderivative-shaped inputs, a loss closure, its two blocks and the dense Hessian
    over the blocks' parameters (A first), by torch.autograd.functional.hessian."""
    kwargs, dtype = TINY[name]
    torch.manual_seed(0)
    family = get_family("antiderivative")
    model = build_model(name, family, **kwargs).to(dtype)
    theta = torch.randn(4, family.theta_size, dtype=dtype)
    with torch.no_grad():
        start = model.values(theta)
        target = 0.3 * start + 0.1 * torch.randn_like(start)

    def loss_fn():
        return (model.values(theta) - target).pow(2).mean()

    a, b = parameter_blocks(model, name).values()
    named = dict(model.named_parameters())
    keys = [k for group in (a, b) for k, p in named.items() if any(p is q for q in group)]
    shapes = [named[k].shape for k in keys]
    fixed = {"model." + k: p.detach() for k, p in named.items() if k not in keys}
    wrapper = _Values(model)

    def flat_loss(vector):
        parts = torch.split(vector, [math.prod(s) for s in shapes])
        params = {"model." + k: t.reshape(s) for k, t, s in zip(keys, parts, shapes)} | fixed
        return (functional_call(wrapper, params, (theta,)) - target).pow(2).mean()

    point = torch.cat([named[k].detach().reshape(-1) for k in keys])
    dense = torch.autograd.functional.hessian(flat_loss, point)
    size_a = sum(p.numel() for p in a)
    return loss_fn, a, b, dense, size_a


@pytest.mark.parametrize("name", ["deeponet", "fno"])
def test_block_norms_match_the_dense_hessian(name):
    loss_fn, a, b, dense, k = _tiny_problem(name)
    assert torch.allclose(dense, dense.T, atol=1e-5)
    expected = {"a": torch.linalg.matrix_norm(dense[:k, :k], 2), "b": torch.linalg.matrix_norm(dense[k:, k:], 2),
                "ab": torch.linalg.svdvals(dense[:k, k:])[0]}
    found = block_spectral_norms(loss_fn, a, b, iterations=2000, seed=0, tol=1e-9)
    for key, value in expected.items():
        assert abs(found[key] - float(value)) <= 1e-4 * float(value), (name, key, found[key], float(value))
    # the blocks differ from each other and from the whole Hessian: each estimate is of its own block
    assert len({round(v, 6) for v in found.values()}) == 3


def test_cross_block_norm_is_the_top_singular_value_of_the_off_diagonal_block():
    """On a quadratic with a known Hessian: the cross estimate is sigma_max(H_AB), not an eigenvalue of H."""
    generator = torch.Generator().manual_seed(3)
    root = torch.randn(9, 9, generator=generator, dtype=torch.float64)
    hessian = root @ root.T / 9 - 0.5 * torch.eye(9, dtype=torch.float64)
    x = torch.nn.Parameter(torch.randn(5, generator=generator, dtype=torch.float64))
    y = torch.nn.Parameter(torch.randn(2, 2, generator=generator, dtype=torch.float64))

    def loss_fn():
        z = torch.cat([x, y.reshape(-1)])
        return 0.5 * z @ hessian @ z  # an exact quadratic over several tensors

    found = block_spectral_norms(loss_fn, [x], [y], iterations=3000, tol=1e-13)
    top = float(torch.linalg.svdvals(hessian[:5, 5:])[0])
    assert abs(found["ab"] - top) <= 1e-8 * top
    assert abs(found["a"] - float(torch.linalg.eigvalsh(hessian[:5, :5]).abs().max())) <= 1e-8
    assert abs(found["ab"] - float(torch.linalg.eigvalsh(hessian).abs().max())) > 1e-3


@pytest.mark.parametrize("geometric", [True, False])
def test_bisection_finds_the_threshold_of_a_monotone_criterion(geometric):
    calls = []

    def criterion(x):
        calls.append(x)
        return x <= 3.7

    found = bisect_threshold(criterion, 1e-3, 1e3, 40, geometric=geometric)
    assert found["censored"] is None and len(calls) == 42
    low, high = found["bracket"]
    assert low <= 3.7 < high and abs(found["threshold"] - 3.7) <= 1e-6 * 3.7
    assert bisect_threshold(lambda x: True, 1.0, 2.0, 5)["censored"] == "above"
    below = bisect_threshold(lambda x: False, 1.0, 2.0, 5)
    assert below["censored"] == "below" and len(below["evaluations"]) == 1


def test_power_law_fit_reads_the_exponent():
    widths = [10, 20, 50, 100, 200, 500]
    fit = fit_power_law(widths, [2.0 * w ** 0.5 for w in widths])
    assert abs(fit["exponent"] - 0.5) < 1e-12 and abs(fit["r2"] - 1) < 1e-12 and fit["consistent"]
    noisy = fit_power_law(widths, [w * (1.1 if i % 2 else 0.9) for i, w in enumerate(widths)])
    assert 0.9 < noisy["exponent"] < 1.1 and noisy["r2"] < 1 and noisy["consistent"] is False


def test_radius_cli_writes_the_table_and_the_fit(tmp_path, capsys):
    out = tmp_path / "radius"
    argv = ["study", "radius", "--model", "deeponet", "--widths", "4,8,16", "--seeds", "0,1", "--steps", "30",
            "--n-train", "8", "--probe-steps", "3", "--bisections", "3", "--rho-min", "0.01", "--rho-max", "100",
            "--out", str(out)]
    assert main(argv) == 0
    result = json.loads((out / "radius.json").read_text())
    assert {"definitions", "settings", "rows", "table", "fit_width", "fit_parameters", "text", "plots"} <= set(result)
    assert [t["width"] for t in result["table"]] == [4, 8, 16] and len(result["rows"]) == 6
    for row in result["rows"]:
        assert {"width", "seed", "parameters", "trained_loss", "rho", "censored", "draws"} <= set(row)
        assert 0.01 <= row["rho"] <= 100 and row["trained_loss"] > 0
        assert len(row["draws"][0]["probes"]) in (1, 2, 5)
    assert {"exponent", "r2", "n", "stderr"} <= set(result["fit_width"])
    assert (out / "plots" / "radius_vs_width.png").stat().st_size > 1000
    assert "sqrt(width)" in capsys.readouterr().out or result["fit_width"]["exponent"] is None


def test_width_study_records_hessian_blocks(tmp_path, capsys):
    out = tmp_path / "width"
    argv = ["study", "width", "--model", "deeponet,fno", "--problem", "antiderivative", "--widths", "3,6",
            "--steps", "4", "--n-train", "4", "--n-test", "2", "--hessian-every", "2", "--hessian-iterations", "0",
            "--hessian-blocks", "5", "--hessian-batch", "3", "--out", str(out)]
    assert main(argv) == 0
    curves = json.loads((out / "curves.json").read_text())
    for pair in curves["pairs"]:
        for result in pair["results"]:
            assert [s for s, _ in result["hessian_blocks"]] == [0, 2, 4]
            assert all(v[k] > 0 for _, v in result["hessian_blocks"] for k in ("a", "b", "ab"))
        blocks = pair["verdict"]["hessian_blocks"]
        assert len(blocks["final"]["ab"]) == 2 and "-" in blocks["names"]["ab"]
    header, *rows = (out / "curves.csv").read_text().strip().splitlines()
    assert header.endswith("hessian_block_a,hessian_block_b,hessian_block_ab")
    assert sum(1 for r in rows if not r.endswith(",,")) == 2 * 2 * 3
    assert (out / "plots" / "hessian_blocks_vs_width.png").stat().st_size > 1000
    assert "Hessian blocks" in capsys.readouterr().out


@pytest.mark.parametrize("extra", [["--rho-min", "-1"], ["--rho-max", "-5"], ["--rho-min", "10", "--rho-max", "1"],
                                   ["--model", "nope"], ["--model", "all"], ["--seeds", "x"], ["--margin", "nan"],
                                   ["--probe-steps", "0"], ["--widths", "0,5"]])
def test_radius_refuses_bad_input_in_one_line(tmp_path, capsys, extra):
    out = tmp_path / "never"
    code = main(["study", "radius", "--out", str(out)] + extra)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("convexop: error:"), err
    assert not out.exists()


def test_width_study_refuses_negative_hessian_blocks(tmp_path, capsys):
    code = main(["study", "width", "--model", "deeponet", "--problem", "antiderivative", "--hessian-blocks", "-1",
                 "--out", str(tmp_path / "never")])
    err = capsys.readouterr().err
    assert code == 2 and "--hessian-blocks" in err and len(err.strip().splitlines()) == 1
