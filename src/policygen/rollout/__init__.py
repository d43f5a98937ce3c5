from policygen.rollout.engine import RolloutEngine, RolloutResult
from policygen.rollout.factory import make_engine

__all__ = ["RolloutEngine", "RolloutResult", "make_engine"]
