"""Side by side with the peers (optional extra `peers`): our FNO against neuraloperator's FNO on
Burgers, our DeepONet against DeepXDE's DeepONetCartesianProd (PyTorch backend) on antiderivative.
Same data (our generators, seed 1), same loss, same optimiser, measured in one run; prints test
relative L2, seconds per epoch (FNO) or per iteration (DeepONet) and the ratios, and writes
OUT/peers.json. A peer that is not installed is skipped with a message.

    DDE_BACKEND=pytorch python benchmarks/peers_operators.py --out runs/peers [--epochs 5] [--iterations 5000]

FNO: width 64, 16 kept modes, 4 Fourier layers, GELU, projection 128, linear skip, no channel MLP,
Burgers at 256 points, 1000 train / 100 test, batch 20, Adam lr 1e-3, relative L2 loss
(neuraloperator: n_modes=(30,) keeps 30 // 2 + 1 = 16 modes; its grid embedding adds x, ours
(cos, sin)(2 pi k x), k = 1, 2). DeepONet: Lu et al.'s [100, 40, 40] x [1, 40, 40], ReLU,
Glorot normal, 150 train / 1000 test functions, full batch, Adam lr 1e-3, MSE loss (DeepXDE's
antiderivative_aligned example).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from convexop import data as datasets
from convexop.families import get_family
from convexop.models import build_model


def relative_l2(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((predicted - target).norm(dim=-1) / target.norm(dim=-1)).mean()


def real_parameters(model: torch.nn.Module) -> int:
    """Trainable reals (a complex weight counts twice; neuraloperator stores complex tensors)."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters() if p.requires_grad)


def split(name: str, n_train: int, n_test: int, **config):
    family = get_family(name, **config)
    full = datasets.generate(family, n_train + n_test, seed=1)
    as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float32)
    return family, [as_tensor(a) for a in (full.params[:n_train], full.targets[:n_train],
                                           full.params[n_train:], full.targets[n_train:])]


def train_epochs(forward, parameters, u, s, epochs: int, batch: int, seed: int = 0) -> float:
    """Adam lr 1e-3 on the relative L2 loss; returns seconds per epoch."""
    optimizer = torch.optim.Adam(parameters, lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(u), generator=generator)
        for start in range(0, len(u), batch):
            index = order[start:start + batch]
            loss = relative_l2(forward(u[index]), s[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return (time.perf_counter() - started) / epochs


def compare_fno(epochs: int) -> dict:
    try:
        from neuralop.models import FNO as PeerFNO
    except ImportError as error:
        return {"skipped": f"neuraloperator not importable ({error}); pip install neuraloperator"}
    family, (u, s, u_test, s_test) = split("burgers", 1000, 100, resolution=256)
    torch.manual_seed(0)
    ours = build_model("fno", family, width=64, modes=16, depth=4, activation="gelu", projection_width=128)
    torch.manual_seed(0)
    peer = PeerFNO(n_modes=(30,), in_channels=1, out_channels=1, hidden_channels=64, n_layers=4,
                   lifting_channel_ratio=0, projection_channel_ratio=2, use_channel_mlp=False, fno_skip="linear")
    scale = family.target_scale  # the peer sees targets divided by the same fixed scale as ours

    def peer_forward(batch):
        return peer(batch[:, None, :])[:, 0] * scale

    result = {}
    for name, model, forward in (("ours", ours, ours.values), ("neuraloperator", peer, peer_forward)):
        seconds = train_epochs(forward, list(model.parameters()), u, s, epochs, batch=20)
        with torch.no_grad():
            error = float(relative_l2(forward(u_test), s_test))
        result[name] = {"test_relative_l2": error, "seconds_per_epoch": seconds,
                        "parameters": real_parameters(model)}
    result["error_ratio"] = result["ours"]["test_relative_l2"] / result["neuraloperator"]["test_relative_l2"]
    result["time_ratio"] = result["ours"]["seconds_per_epoch"] / result["neuraloperator"]["seconds_per_epoch"]
    result["settings"] = {"epochs": epochs, "batch": 20, "lr": 1e-3, "loss": "relative L2", "resolution": 256}
    return result


def compare_deeponet(iterations: int) -> dict:
    os.environ.setdefault("DDE_BACKEND", "pytorch")
    try:
        import deepxde as dde
    except ImportError as error:
        return {"skipped": f"deepxde not importable ({error}); pip install deepxde"}
    if dde.backend.backend_name != "pytorch":
        return {"skipped": f"deepxde backend is {dde.backend.backend_name}, set DDE_BACKEND=pytorch"}
    family, (u, s, u_test, s_test) = split("antiderivative", 150, 1000)
    x = torch.as_tensor(family.points, dtype=torch.float32)[:, None]
    torch.manual_seed(0)
    ours = build_model("deeponet", family, width=40, depth=2, activation="relu")
    optimizer = torch.optim.Adam(ours.parameters(), lr=1e-3)
    started = time.perf_counter()
    for _ in range(iterations):
        loss = (ours.values(u) - s).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    ours_seconds = (time.perf_counter() - started) / iterations
    with torch.no_grad():
        ours_error = float(relative_l2(ours.values(u_test), s_test))
    torch.manual_seed(0)
    data = dde.data.TripleCartesianProd(X_train=(u.numpy(), x.numpy()), y_train=s.numpy(),
                                        X_test=(u_test.numpy(), x.numpy()), y_test=s_test.numpy())
    net = dde.nn.DeepONetCartesianProd([100, 40, 40], [1, 40, 40], "relu", "Glorot normal")
    model = dde.Model(data, net)
    model.compile("adam", lr=1e-3, metrics=["mean l2 relative error"])
    started = time.perf_counter()
    model.train(iterations=iterations, display_every=iterations, verbose=0)
    peer_seconds = (time.perf_counter() - started) / iterations
    predicted = torch.as_tensor(model.predict((u_test.numpy(), x.numpy())), dtype=torch.float32)
    peer_error = float(relative_l2(predicted, s_test))
    return {"ours": {"test_relative_l2": ours_error, "seconds_per_iteration": ours_seconds,
                     "parameters": ours.parameter_count()},
            "deepxde": {"test_relative_l2": peer_error, "seconds_per_iteration": peer_seconds,
                        "parameters": real_parameters(net)},
            "error_ratio": ours_error / peer_error, "time_ratio": ours_seconds / peer_seconds,
            "settings": {"iterations": iterations, "batch": "full (150)", "lr": 1e-3, "loss": "MSE"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/peers")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=5000)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"fno_burgers": compare_fno(args.epochs), "deeponet_antiderivative": compare_deeponet(args.iterations),
               "torch_threads": torch.get_num_threads()}
    (out / "peers.json").write_text(json.dumps(results, indent=2))
    for case, result in results.items():
        if not isinstance(result, dict):
            continue
        if "skipped" in result:
            print(f"{case}: skipped: {result['skipped']}")
            continue
        peer = next(k for k in result if k not in ("ours", "error_ratio", "time_ratio", "settings"))
        unit = "epoch" if "seconds_per_epoch" in result["ours"] else "iteration"
        print(f"{case}: test relative L2 ours {result['ours']['test_relative_l2']:.4f} vs {peer} "
              f"{result[peer]['test_relative_l2']:.4f} (ratio {result['error_ratio']:.2f}); seconds per {unit} "
              f"ours {result['ours'][f'seconds_per_{unit}']:.4g} vs {result[peer][f'seconds_per_{unit}']:.4g} "
              f"(ratio {result['time_ratio']:.2f}); parameters {result['ours']['parameters']:,} vs "
              f"{result[peer]['parameters']:,}")


if __name__ == "__main__":
    main()
