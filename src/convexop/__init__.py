"""convexop: learned solution operators for families of convex programs.

Bring your own family: `convexop.from_torch(g, f, ...)` (a batched torch loss and a prox-library f)
and `convexop.from_cvxpy(problem, sampler)` (a DPP CVXPY problem) return a family that `generate`,
`train`, `evaluate`, `solve` and `--polish` accept (`--family FILE.py:NAME` on the command line).
"""

from .version import __version__

__all__ = ["__version__", "from_cvxpy", "from_torch"]


def from_torch(*args, **kwargs):
    """See `convexop.families.user.from_torch`."""
    from .families.user import from_torch as build

    return build(*args, **kwargs)


def from_cvxpy(*args, **kwargs):
    """See `convexop.families.from_cvxpy.from_cvxpy`."""
    from .families.from_cvxpy import from_cvxpy as build

    return build(*args, **kwargs)
