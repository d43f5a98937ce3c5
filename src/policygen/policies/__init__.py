from policygen.policies.flat_mlp import MLPSpec, forward, init_thetas, to_module, unflatten
from policygen.policies.standalone import Policy

__all__ = ["MLPSpec", "Policy", "forward", "init_thetas", "to_module", "unflatten"]
