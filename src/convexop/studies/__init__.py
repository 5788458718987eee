"""Studies of the baselines: `width` (training against width, arXiv 2502.00705), its figures and CSV
(`plots`) and the `convexop study ...` command (`cli`)."""
