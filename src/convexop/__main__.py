"""`python -m convexop ...` (and `torchrun --nproc_per_node N -m convexop train ...`): the CLI."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
