import numpy as np
import pytest
import torch

from convexop.errors import InputError
from convexop.families import get_family
from convexop.models import GEO, build_model, from_checkpoint, save_model


def test_parameter_count_matches_the_paper_formula():
    family = get_family("heat-pde")
    model = GEO(family, depth=10, width=20)
    assert model.parameter_count() == 3984 == 10 * 8 * (8 + 2 * 20 + 1) + 8**2
    assert GEO(get_family("toy-box"), depth=20, width=20).parameter_count() == 1724


def test_forward_backward_initialisation_solves_the_box_program():
    """With A = I, central-difference queries and B = -step/(2h), each layer is a forward-backward step."""
    family = get_family("toy-box").double()
    theta = np.zeros((3, 10))
    theta[:, [0, 3]] = [[2.0, 3.0], [1.0, 1.5], [4.0, 2.0]]
    theta[:, 4:6] = [[-5.0, 1.0], [0.3, -0.2], [2.0, 9.0]]
    theta[:, 9] = 1.0
    model = GEO(family, depth=300, width=4, gamma=0.0, init="forward-backward", step=0.2).double()
    model.set_inference(start="zero")
    with torch.no_grad():
        x = model.coefficients(torch.tensor(theta))
    assert np.abs(x.numpy() - family.in_basis_optimum(theta)).max() < 1e-6


def test_random_start_is_redrawn_and_zero_start_is_repeatable():
    family = get_family("heat-pde")
    model = GEO(family, init="scaled", start_std=0.5)
    theta = torch.tensor([[0.1], [0.3]])
    with torch.no_grad():
        a, b = model.coefficients(theta), model.coefficients(theta)
        assert not torch.allclose(a, b)
        model.set_inference(start="zero")
        assert torch.equal(model.coefficients(theta), model.coefficients(theta))
        model.set_inference(start="random", draws=8)
        c = model.coefficients(theta)
    assert c.shape == (2, 8)


def test_output_lies_in_the_domain_of_f():
    family = get_family("toy-box")
    model = GEO(family, init="scaled", init_std=3.0)
    theta = torch.as_tensor(family.sample(64, np.random.default_rng(0)), dtype=torch.float32)
    with torch.no_grad():
        assert model.coefficients(theta).abs().max() <= 1.0


def test_gradients_reach_every_parameter():
    family = get_family("heat-pde")
    model = GEO(family, depth=3, width=5, init="scaled")
    loss = model.values(torch.tensor([[0.1], [0.2]])).pow(2).sum()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_checkpoint_round_trip_and_tamper_refusal(tmp_path):
    family = get_family("heat-pde", rank=6, scale=0.6)
    model = build_model("geo", family, depth=3, width=7, init="scaled")
    save_model(model, tmp_path)
    again = from_checkpoint(tmp_path)
    assert again.family.rank == 6 and again.family.config["scale"] == 0.6
    theta = torch.tensor([[0.05], [0.35]])
    model.set_inference(start="zero")
    again.set_inference(start="zero")
    with torch.no_grad():
        assert torch.equal(model.values(theta), again.values(theta))
    weights = tmp_path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="sha256"):
        from_checkpoint(tmp_path)
    with pytest.raises(InputError, match="trained on heat-pde"):
        from_checkpoint(tmp_path, family=get_family("toy-box"))


def test_bad_hyperparameters_name_the_field():
    family = get_family("toy-box")
    for kwargs, field in [({"depth": 0}, "depth"), ({"gamma": 1.0}, "gamma"), ({"init": "magic"}, "init"),
                          ({"mode": "sideways"}, "mode")]:
        with pytest.raises(InputError, match=field):
            GEO(family, **kwargs)


def test_every_constructor_keyword_is_recorded_for_from_checkpoint():
    """`from_checkpoint` rebuilds a model from model.json's init_kwargs alone: a keyword missing there
    would silently fall back to its default (a relative-query GEO reloaded as an absolute one)."""
    import inspect

    from convexop.models import GEO, build_model

    family = get_family("toy-box")
    model = build_model("geo", family, queries="relative", depth=2, width=4)
    expected = set(inspect.signature(GEO.__init__).parameters) - {"self", "family"}
    assert set(model.init_kwargs) == expected and model.init_kwargs["queries"] == "relative"
