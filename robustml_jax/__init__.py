"""robustml_jax: JAX/Flax reimplementations of ten papers on robust and scalable ML."""

__version__ = "0.1.0"
