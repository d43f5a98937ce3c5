"""policygen: neural networks that output the weights of working policies on command."""

import os

__version__ = "0.1.0"

# The engine alternates EnvPool's C++ threads with torch's OpenMP threads on the same cores; OpenMP's
# default busy-waiting then steals the cores from the physics (measured: 10x slower rollouts on a loaded
# 2-core machine). Passive waiting costs nothing measurable. Effective only if torch is not imported yet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def load(run_dir: str):
    """Open a run: ``policygen.load("runs/x").generate(500.0)`` is a policy, ``policy(obs) -> action``."""
    from policygen.algorithms.loading import load_run

    return load_run(run_dir)
