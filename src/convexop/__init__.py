"""convexop: learned solution operators for families of convex programs."""

__version__ = "0.1.0"
