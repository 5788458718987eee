"""The solver kit: each algorithm once.

- `program`: the composite in-basis program min_x S(x) + h(x) (smooth part + exact prox), its
  forward-backward step and certificate; the QP-dual program kind;
- `fista`: batched FISTA with adaptive restart and backtracking;
- `newton`: active-set Newton polish (box, L1, simplex pieces; closed-form Hessians where given);
- `qp`: strongly convex QPs through their dual: data, batched interior point, KKT polish;
- `fixed_point`: Picard and Anderson fixed-point solvers and backward modes (equilibrium mode);
- `polish`: one `polish(program, x, tol)` entry that dispatches by what the program offers.
"""
