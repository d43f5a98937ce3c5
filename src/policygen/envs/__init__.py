from policygen.envs.make import EnvInfo, env_info, make_gymnasium
from policygen.envs.stats import RunningStats

__all__ = ["EnvInfo", "RunningStats", "env_info", "make_gymnasium"]
