"""DeepONet, FNO and MLP: shapes, gradient flow, scalings, resolution change, checkpoints, training,
and the width-study command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from convexop.cli import main
from convexop.errors import InputError
from convexop.families import FAMILIES as BUILTIN
from convexop.families import get_family
from convexop.models import build_model, from_checkpoint, save_model
from convexop.references.random_fields import periodic_field
from convexop.training.config import resolve_config
from convexop.training.run import train_run

SMALL = {"deeponet": {"width": 16, "depth": 2}, "fno": {"width": 8, "modes": 6, "depth": 2},
         "mlp": {"width": 16, "depth": 2}}
FAMILIES = [("antiderivative", {}), ("burgers", {"resolution": 256}), ("diffusion-reaction", {"stride": 3}),
            ("heat-pde", {})]




def _theta(family, n=3, seed=0):
    return torch.as_tensor(family.sample(n, np.random.default_rng(seed)), dtype=torch.float32)


@pytest.mark.parametrize("model", ["deeponet", "fno", "mlp"])
@pytest.mark.parametrize("name, config", FAMILIES)
def test_shapes_and_gradient_flow(model, name, config):
    family = get_family(name, **config)
    net = build_model(model, family, **SMALL[model])
    out = net.values(_theta(family))
    assert out.shape == (3, len(family.points)) and torch.isfinite(out).all()
    assert out.std(0).mean() > 0  # depends on the input
    out.pow(2).mean().backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, dead


def test_deeponet_is_lu_et_al_and_aligned():
    family = get_family("antiderivative")
    net = build_model("deeponet", family, width=40, depth=2, activation="relu")
    assert net.parameter_count() == 7401  # [100, 40, 40] x [1, 40, 40] + bias
    theta = _theta(family)
    points = np.array([0.0, 0.37, 1.0])
    aligned = net.values(theta)
    anywhere = net.evaluate(theta, points)
    assert torch.allclose(anywhere[:, [0, -1]], aligned[:, [0, -1]], atol=1e-6)
    assert anywhere.shape == (3, 3)


@pytest.mark.parametrize("model", ["deeponet", "fno"])
def test_ntk_scaling_keeps_the_output_size_at_any_width(model):
    """With 1/sqrt(fan_in) per layer and N(0, sigma0^2) weights the output is O(1) at any width;
    with N(0, sigma0^2) weights and no scaling it would grow like sqrt(width)."""
    family = get_family("antiderivative")
    theta = _theta(family, 32)
    sizes = {}
    for width in (8, 512):
        torch.manual_seed(0)
        kwargs = {"modes": 4, "depth": 2} if model == "fno" else {"depth": 3}
        net = build_model(model, family, width=width, scaling="ntk", init_std=1.0, **kwargs)
        with torch.no_grad():
            sizes[width] = float(net.values(theta).std())
    assert 0.33 < sizes[512] / sizes[8] < 3.0, sizes
    torch.manual_seed(0)
    standard = build_model("deeponet", family, width=512, depth=3)
    assert all(layer.multiplier == 1.0 for layer in standard.branch.layers)


def test_fno_gives_the_same_function_at_two_resolutions():
    coarse, fine = get_family("burgers", resolution=256), get_family("burgers", resolution=1024)
    torch.manual_seed(0)
    a = build_model("fno", coarse, width=16, modes=12, depth=3)
    b = build_model("fno", fine, width=16, modes=12, depth=3)
    b.load_state_dict(a.state_dict())
    u_coarse = torch.as_tensor(periodic_field(4, 256, np.random.default_rng(3)), dtype=torch.float32)
    u_fine = torch.as_tensor(periodic_field(4, 1024, np.random.default_rng(3)), dtype=torch.float32)
    with torch.no_grad():
        y_coarse, y_fine = a.values(u_coarse), b.values(u_fine)
    assert (y_fine[:, ::4] - y_coarse).norm() / y_coarse.norm() < 1e-5
    assert (y_coarse[0] - y_coarse[1]).norm() / y_coarse.norm() > 0.05  # not a constant map


@pytest.mark.parametrize("model", ["deeponet", "fno", "mlp"])
def test_checkpoint_round_trip(tmp_path, model):
    family = get_family("burgers", resolution=256)
    net = build_model(model, family, scaling="ntk", **SMALL[model])
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_model(net, tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["class"] == model and meta["family_config"]["resolution"] == 256
    loaded = from_checkpoint(tmp_path)
    theta = _theta(family)
    with torch.no_grad():
        assert torch.equal(net.values(theta), loaded.values(theta))
    assert type(loaded) is type(net) and loaded.init_kwargs == net.init_kwargs
    if model == "fno":  # the same weights run at another resolution
        finer = loaded.on_family(get_family("burgers", resolution=1024))
        u = torch.as_tensor(periodic_field(2, 1024, np.random.default_rng(1)), dtype=torch.float32)
        with torch.no_grad():
            assert torch.allclose(finer.values(u)[:, ::4], loaded.values(u[:, ::4]), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("model, overrides, target", [
    ("deeponet", {"steps": "600", "lr": "3e-3"}, 0.15),
    ("fno", {"steps": "200", "lr": "3e-3", "width": "12", "modes": "8", "depth": "2", "batch_size": "50"}, 0.2),
])
def test_short_training_on_antiderivative_lowers_the_error(tmp_path, model, overrides, target):
    settings = {"n_instances": "300", "test_fraction": "0.2", "tensorboard": "false", "eval_every": "1000",
                "checkpoint_every": "1000"} | overrides
    config = resolve_config(BUILTIN["antiderivative"], model, settings)
    torch.manual_seed(config.training.seed)
    family = get_family("antiderivative")
    fresh = build_model(model, family, **config.model_kwargs)
    _, history = train_run(config, tmp_path)
    from convexop.data import read_dataset

    test = read_dataset(tmp_path / "test.h5", family)
    theta, target_values = (torch.as_tensor(a, dtype=torch.float32) for a in (test.params, test.targets))
    with torch.no_grad():
        before = ((fresh.values(theta) - target_values).norm(dim=1) / target_values.norm(dim=1)).mean()
    after = history[-1]["test_relative_l2"]
    assert after < target and after < 0.2 * float(before), (float(before), after)


def test_set_keys_are_validated_per_model():
    with pytest.raises(InputError, match="unknown key; valid keys: .*basis_size"):
        resolve_config(BUILTIN["antiderivative"], "deeponet", {"modes": "4"})
    with pytest.raises(InputError, match="activation"):
        build_model("mlp", get_family("antiderivative"), activation="swish")
    config = resolve_config(BUILTIN["burgers"], "fno", {"modes": "4", "resolution": "512"})
    assert config.model_kwargs["modes"] == 4 and config.family_config["resolution"] == 512
    with pytest.raises(InputError, match="resolution"):
        get_family("burgers", resolution=300)


def test_baselines_train_on_a_convex_family_through_the_cli(tmp_path, capsys):
    common = ["--set", "steps=20", "--set", "eval_every=10", "--set", "n_instances=40", "--set", "tensorboard=false"]
    for model, extra in (("deeponet", ["--set", "width=8"]), ("fno", ["--set", "width=6", "--set", "modes=4"])):
        run_dir = tmp_path / model
        assert main(["train", "heat-pde", "--model", model, "--out", str(run_dir)] + common + extra) == 0
        assert main(["evaluate", str(run_dir)]) == 0
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["model"] == model and metrics["test"]["n"] == 8
    capsys.readouterr()
    code = main(["train", "heat-pde", "--model", "deeponet", "--out", str(tmp_path / "bad"), "--set", "modes=3"])
    err = capsys.readouterr().err
    assert code == 2 and "modes" in err and len(err.strip().splitlines()) == 1


def test_width_study_cli_writes_every_curve(tmp_path, capsys):
    out = tmp_path / "study"
    argv = ["study", "width", "--model", "deeponet,fno", "--problem", "burgers", "--widths", "4,8", "--steps", "6",
            "--n-train", "6", "--n-test", "3", "--hessian-every", "3", "--hessian-iterations", "3", "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    curves = json.loads((out / "curves.json").read_text())
    assert [(p["model"], p["problem"]) for p in summary["pairs"]] == [("deeponet", "burgers"), ("fno", "burgers")]
    for pair in curves["pairs"]:
        assert pair["verdict"]["claim"] in ("holds", "partly holds", "does not hold")
        for result in pair["results"]:
            assert len(result["loss"]) == len(result["grad_norm"]) == len(result["distance"]) == 7
            assert [s for s, _ in result["hessian"]] == [0, 3, 6]
            assert all(v > 0 for _, v in result["hessian"]) and result["distance"][0] == 0 < result["distance"][-1]
    rows = (out / "curves.csv").read_text().strip().splitlines()
    assert rows[0].startswith("model,problem,width,step,loss,grad_norm,distance,hessian_norm")
    assert len(rows) == 1 + 4 * 7
    for name in ("curves_deeponet_burgers.png", "curves_fno_burgers.png", "final_loss_vs_width.png",
                 "hessian_vs_width.png"):
        assert (out / "plots" / name).stat().st_size > 1000
    assert "claim" in capsys.readouterr().out


def test_hessian_power_iteration_finds_the_top_eigenvalue():
    from convexop.studies.width import hessian_spectral_norm

    matrix = torch.diag(torch.tensor([3.0, -7.0, 1.0, 0.5]))
    x = torch.nn.Parameter(torch.ones(4))
    value = hessian_spectral_norm(lambda: 0.5 * x @ matrix @ x, [x], iterations=60)
    assert abs(value - 7.0) < 1e-3


@pytest.mark.parametrize("widths", ["10,abc", "0,10", "", "10;50"])
def test_width_study_refuses_bad_widths(tmp_path, capsys, widths):
    out = tmp_path / "never"
    code = main(["study", "width", "--model", "deeponet", "--problem", "antiderivative", "--widths", widths,
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "--widths" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("shape", [(2, 3, 17), (2, 3, 100), (2, 3, 6), (2, 3, 13, 9), (2, 3, 34, 34)])
def test_truncated_dft_equals_fft_with_mode_cut_off(shape):
    """The spectral convolution (matrix DFT of the kept modes) equals rfft -> keep -> irfft."""
    from convexop.models.fno import SpectralConvolution

    dims, modes = len(shape) - 2, 5
    layer = SpectralConvolution(3, modes, dims, "standard", 1.0)
    v = torch.randn(shape)
    w = torch.view_as_complex(layer.weight.detach())
    if dims == 1:
        spectrum = torch.fft.rfft(v)
        m = min(modes, spectrum.shape[-1])
        out = torch.zeros(2, 3, spectrum.shape[-1], dtype=spectrum.dtype)
        out[..., :m] = torch.einsum("bik,iok->bok", spectrum[..., :m], w[..., :m])
        expected = torch.fft.irfft(out, n=shape[-1])
    else:
        n0 = shape[-2]
        spectrum = torch.fft.rfft2(v)
        m0, m1 = min(modes, n0 // 2), min(modes, spectrum.shape[-1])
        out = torch.zeros_like(spectrum)
        out[..., :m0, :m1] = torch.einsum("bixy,ioxy->boxy", spectrum[..., :m0, :m1], w[:, :, :m0, :m1])
        out[..., n0 - m0:, :m1] = torch.einsum("bixy,ioxy->boxy", spectrum[..., n0 - m0:, :m1],
                                               w[:, :, 2 * modes - m0:, :m1])
        expected = torch.fft.irfft2(out, s=shape[-2:])
    with torch.no_grad():
        assert (layer(v) - expected).abs().max() < 1e-5 * expected.abs().max()
