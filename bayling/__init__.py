"""BayLing recipe as a library: pure, typed functions that the pipeline stages call."""

__version__ = "0.1.0"
