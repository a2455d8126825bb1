"""fle-chaos orchestrator: ensembles behind Toxiproxy, fault plans, invariants, reports."""

# The one place the version is written (pyproject.toml reads it): a pytest-xdist
# worker whose version differs from its controller's is refused (chaos.pytest_plugin).
__version__ = "0.1.0"
