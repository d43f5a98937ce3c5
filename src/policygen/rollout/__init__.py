"""The rollout engine. Names are imported on first use, so ``rollout.backends`` (imported by the Gymnasium
backend's worker processes) loads without torch."""

import importlib

_WHERE = {"RolloutEngine": "engine", "RolloutResult": "engine", "make_engine": "factory"}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"policygen.rollout.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'policygen.rollout' has no attribute {name!r}")
