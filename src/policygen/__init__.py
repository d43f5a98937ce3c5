"""policygen: neural networks that output the weights of working policies on command."""

__version__ = "0.1.0"


def load(run_dir: str):
    """Open a run: ``policygen.load("runs/x").generate(500.0)`` is a policy, ``policy(obs) -> action``."""
    from policygen.algorithms.loading import load_run

    return load_run(run_dir)
