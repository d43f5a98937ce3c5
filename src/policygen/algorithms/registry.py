"""Algorithm names -> classes, imported lazily so a missing optional extra only matters when used."""

from __future__ import annotations

import importlib

from policygen.errors import PolicygenError

ALGORITHMS = {
    "ars": "policygen.algorithms.ars:ARS",
    "gogepo": "policygen.algorithms.gogepo:GoGePo",
    "udrlpg": "policygen.algorithms.udrlpg:UDRLPG",
    # step-based baselines (algorithms/steploop.py): SB3's, sb3-contrib's ARS, classic Upside-Down RL
    "td3": "policygen.algorithms.sb3:TD3",
    "sac": "policygen.algorithms.sb3:SAC",
    "ddpg": "policygen.algorithms.sb3:DDPG",
    "ars-sb3": "policygen.algorithms.sb3:ARSSB3",
    "udrl": "policygen.algorithms.udrl:UDRL",
}


def get_algorithm(name: str):
    if name not in ALGORITHMS:
        raise PolicygenError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")
    module, cls = ALGORITHMS[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("policygen"):
            raise PolicygenError(f"algorithm {name!r} is not implemented in this version of policygen") from None
        raise PolicygenError(f"algorithm {name!r} needs the package {e.name!r}: pip install {e.name}") from None
