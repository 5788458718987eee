"""`convexop bench`: the benchmark cases, their runner and report.

- `cases`: the case registry (`@case`, `Row`, `row`) and the helpers every case shares
  (`train_case_model`, `describe_setting`, `mse_on_law`);
- `heat`, `exact`, `sizes`, `solvers`, `sweeps`, `throughput`: the cases, grouped by idea
  (`solvers` also holds the solver helpers `throughput` reuses: trained GEOs, FISTA to a tolerance,
  CVXPY through each family's `cvxpy_form`);
- `plots`: the figures of the solver and size cases;
- `runner`: `run_bench`, the report (results.json, RESULTS.md) and `load_cases`, the one place that
  imports the case modules and so registers their cases.
"""
