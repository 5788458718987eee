"""convexop: learned solution operators for families of convex programs.

Bring your own family: `convexop.from_torch(g, f, ...)` (a batched torch loss and a prox-library f)
and `convexop.from_cvxpy(problem, sampler)` (a DPP CVXPY problem) return a family that `generate`,
`train`, `evaluate`, `solve` and `--polish` accept (`--family FILE.py:NAME` on the command line).
"""

from .version import __version__

__all__ = ["__version__", "from_cvxpy", "from_torch"]


def from_torch(g, f=None, *, variables, parameters, sampler, name: str = "custom", lipschitz=None,
               reference=None, training: dict | None = None, description: str = ""):
    """A family from a batched torch loss: min_x f(x) + g(x, theta).

    g(x, theta): x (batch, n) tensor, theta a dict name -> (batch, *shape) tensors -> (batch,);
    f: a `convexop.prox` function (None: f = 0; `SeparableSum` for blocks of variables);
    variables: n, or {name: shape} (the flat coordinates are the blocks in this order);
    parameters: {name: shape or convexop.families.Parameter};
    sampler: callable (n, rng) -> {name: array (n, *shape)}, or {name: (low, high)} (uniform; also the
        parameter's domain) or {name: callable (n, rng)};
    lipschitz: optional theta dict -> (batch,) bound on the Lipschitz constant of grad g;
    reference: optional theta dict -> (batch, n) accurate optimum (default: the solver kit's polish);
    training: optional {"model": {...}, "training": {...}} overrides of the default settings.
    Returns a family that `generate`, `train`, `evaluate`, `solve` and `--polish` accept.
    """
    from .families.user import from_torch as build

    return build(g, f, variables=variables, parameters=parameters, sampler=sampler, name=name, lipschitz=lipschitz,
                 reference=reference, training=training, description=description)


def from_cvxpy(problem, sampler, *, name: str = "cvxpy", training: dict | None = None, interior=None):
    """A family from a DPP CVXPY problem and a sampler of its parameters.

    problem: a cvxpy.Problem whose cvxpy.Parameters (each with a unique name=) are the instance;
    sampler: callable (n, rng) -> {parameter name: array (n, *shape)} (or per-parameter laws);
    interior (QPs through the dual only, optional): theta dict -> (batch, n) strictly feasible primal
        points (variables flattened in order), so every recovered answer is feasible;
    training: optional {"model": {...}, "training": {...}} overrides of the default settings.
    Route (a): a smooth objective (+ c * norm1) with simple-set constraints; route (b): a strongly
    convex QP, solved through its dual. Anything else is refused with one line naming the part.
    """
    from .families.from_cvxpy import from_cvxpy as build

    return build(problem, sampler, name=name, training=training, interior=interior)
