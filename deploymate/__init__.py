"""DeployMate: a self-hosted deployment control plane."""

__version__ = "0.1.0"
