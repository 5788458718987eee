"""The GPU path (`--set device=cuda`): every built-in family trains a few steps on the accelerator and
answers with polish, matching the same run's CPU answers. Skipped, with the reason shown by
`pytest -rs`, where no CUDA device is present (this 2-core CI machine has none)."""

import numpy as np
import pytest
import torch

from convexop import api
from convexop.families import get_family

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device here: the GPU path (device=cuda) is not exercised")

FAMILIES = ["toy-box", "elliptic-pde", "hedging", "qp-dc3", "heat-pde", "utility-max"]
SMALL = {"steps": 3, "n_instances": 24, "eval_every": 1, "batch_size": 8, "tensorboard": False}


@pytest.mark.parametrize("name", FAMILIES)
def test_family_trains_and_answers_on_cuda_like_on_cpu(tmp_path, name):
    family = get_family(name)
    model, history = api.train(family, tmp_path / "gpu", device="cuda", **SMALL)
    assert next(model.parameters()).device.type == "cuda" and np.isfinite(history[-1]["test_mse"])
    instances = [family.instance_from_theta(row) for row in family.sample(4, np.random.default_rng(0))]
    polish = 1e-6 if family.exact else None
    on_gpu = api.solve(model, instances, polish=polish)["instances"]
    on_cpu = api.solve(model.to("cpu"), instances, polish=polish)["instances"]
    for a, b in zip(on_gpu, on_cpu):
        assert a["status"] == b["status"]
        assert np.allclose(a["values"], b["values"], rtol=1e-4, atol=1e-5)
