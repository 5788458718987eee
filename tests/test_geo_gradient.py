"""The gradient-reading GEO (`geo-gradient`) and the family's `gradient`: the model starts as FISTA /
projected gradient exactly, the QP families' closed-form gradient is autograd's (and differentiable),
label-free training lowers the objective, bad keywords are refused naming the field."""

import math

import numpy as np
import pytest
import torch

from convexop.errors import InputError
from convexop.families import FAMILIES, Family, get_family
from convexop.models import GradientGEO, build_model, from_checkpoint
from convexop.models.geo_gradient import fista_momenta
from convexop.training.config import resolve_config
from convexop.training.run import train_run


@pytest.fixture(scope="module")
def family():
    return get_family("qp-dc3")


@pytest.fixture(scope="module")
def theta(family):
    return torch.as_tensor(family.dc3_instances()[-5:])  # float64, DC3's last test instances


def reference_method(family, theta, depth, step, momentum):
    """Projected gradient / FISTA (Beck and Teboulle) from zero, written out: the gradient from the
    solver kit's closed form (QPDualProgram.value_and_gradient), the prox a clamp of the mu block."""
    program = family.in_basis_program(theta)
    me = family.equalities

    def project(x):
        return torch.cat([x[:, :me], x[:, me:].clamp_min(0.0)], 1)

    x = torch.zeros(len(theta), family.rank, dtype=torch.float64)
    y, t = x, 1.0
    for _ in range(depth):
        previous = x
        x = project(y - step * program.value_and_gradient(y)[1])
        if momentum:
            following = (1 + math.sqrt(1 + 4 * t * t)) / 2
            y, t = x + (t - 1) / following * (x - previous), following
        else:
            y = x
    return x


@pytest.mark.parametrize("momentum, step", [("fista", None), ("none", None), ("none", 0.5)])
def test_initialisation_is_fista_or_projected_gradient(family, theta, momentum, step):
    depth = 12
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # FISTA's momenta built in float64 (not rounded to float32)
    try:
        model = GradientGEO(family, depth=depth, momentum=momentum, step=step)
    finally:
        torch.set_default_dtype(default)
    with torch.no_grad():
        x = model.coefficients(theta)
    expected = reference_method(family, theta, depth, 1.0 if step is None else step, momentum == "fista")
    assert torch.allclose(x, expected, rtol=0, atol=1e-10)
    assert (x - reference_method(family, theta, depth - 1, 1.0 if step is None else step,
                                 momentum == "fista")).abs().max() > 1e-4  # depth is honoured
    assert model.parameter_count() == depth * family.rank * 4  # O(L R): d, c, bias, beta


def test_fista_momenta_are_beck_teboulle():
    betas = fista_momenta(5)
    t = [1.0]
    for _ in range(5):
        t.append((1 + math.sqrt(1 + 4 * t[-1] ** 2)) / 2)
    assert betas[0] == 0.0 and betas[1] == 0.0  # y_1 = x_0 and y_2 = x_1 (t_1 = 1)
    assert np.allclose(betas[2:], [(t[k] - 1) / t[k + 1] for k in (1, 2, 3)])


@pytest.mark.parametrize("name", ["qp-dc3", "qp-dc3-1000"])
def test_closed_form_gradient_is_autograd_and_differentiable(name):
    family = get_family(name)
    rng = np.random.default_rng(0)
    theta = torch.as_tensor(family.sample(3, rng))
    x = torch.randn(3, family.rank, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    closed = family.gradient(x, theta)
    automatic = Family.gradient(family, x, theta)  # the contract's default: autograd of g
    assert type(family).gradient is not Family.gradient
    assert torch.allclose(closed, automatic, rtol=1e-10, atol=1e-9 * float(automatic.detach().abs().max()))
    with torch.no_grad():  # the default works without a graph too
        assert torch.allclose(Family.gradient(family, x, theta), automatic)
    # differentiable in x (not detached): the derivative of <grad g(x), v> is the Hessian-vector product
    v = torch.randn_like(x)
    point = x.clone().requires_grad_(True)
    (hv_closed,) = torch.autograd.grad((family.gradient(point, theta) * v).sum(), point)
    (hv_auto,) = torch.autograd.grad((Family.gradient(family, point, theta) * v).sum(), point)
    assert torch.allclose(hv_closed, hv_auto, rtol=1e-9, atol=1e-9)
    assert torch.allclose(hv_closed, v @ family.coefficient_hessian, rtol=1e-9, atol=1e-9)
    single = family.gradient(x.float(), theta.float())  # float32 in, float32 out, close to float64
    assert single.dtype == torch.float32 and (single.double() - closed).abs().max() < 1e-3 * closed.abs().max()


def test_label_free_training_lowers_the_objective(family, tmp_path):
    settings = {"depth": "4", "steps": "40", "lr": "1e-2", "batch_size": "32", "eval_every": "40",
                "n_instances": "24", "seed": "3"}
    config = resolve_config(FAMILIES["qp-dc3"], "geo-gradient", settings)
    config.training.tensorboard = False
    assert config.training.loss == "objective" and config.model_kwargs["momentum"] == "fista"
    train_run(config, tmp_path)
    trained = from_checkpoint(tmp_path, family=family)
    assert isinstance(trained, GradientGEO) and trained.init_kwargs == config.model_kwargs
    start = build_model("geo-gradient", family, **config.model_kwargs)
    held_out = torch.as_tensor(family.sample(256, np.random.default_rng(99)), dtype=torch.float32)
    with torch.no_grad():
        before = family.objective(start.coefficients(held_out), held_out).mean()
        after = family.objective(trained.coefficients(held_out), held_out).mean()
        optimum = family.objective(torch.as_tensor(family.in_basis_optimum(held_out.double().numpy()[:64])),
                                   held_out[:64].double()).mean()
    assert math.isfinite(float(after)) and float(after) < float(before) - 0.2 * (float(before) - float(optimum))


def test_gradients_reach_the_parameters(family, theta):
    model = GradientGEO(family, depth=3, low_rank=2).double()
    family.objective(model.coefficients(theta), theta).mean().backward()
    for name in ("diagonal", "offsets", "bias", "momenta", "left"):  # `right` meets U = 0 at the start
        grad = getattr(model, name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    with torch.no_grad():  # U = 0: the low-rank term starts switched off
        assert torch.equal(model.coefficients(theta), GradientGEO(family, depth=3).double().coefficients(theta))


@pytest.mark.parametrize("kwargs, field", [({"depth": 0}, "depth"), ({"depth": 2.5}, "depth"),
                                           ({"momentum": "heavy-ball"}, "momentum"), ({"step": -1.0}, "step"),
                                           ({"step": math.inf}, "step"), ({"low_rank": -1}, "low_rank"),
                                           ({"low_rank": 101}, "low_rank"), ({"init_std": 0.0}, "init_std")])
def test_bad_keywords_name_the_field(family, kwargs, field):
    with pytest.raises(InputError, match=field) as error:
        build_model("geo-gradient", family, **kwargs)
    assert error.value.field == field


def test_unknown_keywords_stay_errors(family):
    with pytest.raises(TypeError):
        GradientGEO(family, width=20)
    with pytest.raises(InputError, match="--set width"):
        resolve_config(FAMILIES["qp-dc3"], "geo-gradient", {"width": "20"})


def test_default_model_is_the_familys_in_the_cli_and_api(capsys):
    from convexop.cli import main
    from convexop.training.config import default_model

    assert default_model(FAMILIES["qp-dc3"]) == default_model(FAMILIES["qp-dc3-1000"]) == "geo-gradient"
    assert default_model(FAMILIES["heat-pde"]) == "geo"  # the paper's families keep the paper's GEO
    assert main(["train", "qp-dc3", "--show-config"]) == 0
    assert capsys.readouterr().out.startswith("train geo-gradient on qp-dc3")
    assert main(["train", "qp-dc3", "--model", "geo", "--show-config"]) == 0
    assert "width = 200" in capsys.readouterr().out  # --model geo: the paper's GEO settings
