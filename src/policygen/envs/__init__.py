"""Environments: ids, spaces and making them (``make``), running observation statistics (``stats``).

Names are imported on first use, so a process that only steps environments (the Gymnasium backend's
worker processes) does not pay for torch, which ``stats`` needs.
"""

import importlib

_WHERE = {"EnvInfo": "make", "env_info": "make", "make_gymnasium": "make", "RunningStats": "stats"}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"policygen.envs.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'policygen.envs' has no attribute {name!r}")
