from policygen.rollout.engine import RolloutEngine, RolloutResult

__all__ = ["RolloutEngine", "RolloutResult"]
