"""A worker process of ``ProcessGymnasiumBackend``: ``python -m policygen.rollout.env_worker IN_FD OUT_FD``.

Reads its settings (a pickle), then requests from ``IN_FD``: b"s" + slot ids (int64) + actions (float32), or
b"r" + slot ids + seeds (int64); answers each on ``OUT_FD`` (``backends.encode_answer``), or b"e" + a message.
Ends when the pipe closes. The pickles pass between a process and the worker it started, never via files.
"""

from __future__ import annotations

import pickle
import signal
import sys
from multiprocessing.connection import Connection


def serve(inp: Connection, out: Connection) -> None:
    import numpy as np

    from policygen.rollout.backends import GymnasiumBackend, encode_answer, spin_poll

    env_id, num_envs, seed, env_kwargs, step_timeout, path, registration = inp.recv()
    sys.path[:0] = [p for p in path if p not in sys.path]  # so the registration's entry point imports
    try:
        import gymnasium as gym

        if registration is not None and env_id not in gym.registry:
            gym.registry[env_id] = pickle.loads(registration)
        envs = GymnasiumBackend(env_id, num_envs, seed, env_kwargs, None, step_timeout)
    except Exception as e:
        out.send_bytes(b"e" + f"a worker process could not make its envs: {type(e).__name__}: {e}".encode())
        return
    out.send_bytes(b"k")
    act_dim = int(np.prod(envs.envs[0].action_space.shape))
    try:
        while True:
            try:
                spin_poll(inp)
                buf = inp.recv_bytes()
            except EOFError:
                return
            op, view = buf[:1], memoryview(buf)[1:]
            try:
                if op == b"s":
                    n = len(view) // (8 + 4 * act_dim)
                    ids = np.frombuffer(view[:8 * n], dtype=np.int64)
                    # a writable copy, as in one process (an env may write into its action)
                    actions = np.frombuffer(view[8 * n:], dtype=np.float32).reshape(n, act_dim).copy()
                    out.send_bytes(encode_answer(*envs.step(ids, actions), envs.success, envs.errors))
                else:
                    n = len(view) // 16
                    ids, seeds = np.frombuffer(view, dtype=np.int64).reshape(2, n)
                    out.send_bytes(encode_answer(envs.reset_seeded(ids, seeds)))
            except Exception as e:
                out.send_bytes(b"e" + f"{type(e).__name__} in a worker process: {e}".encode())
    finally:
        envs.close()


if __name__ == "__main__":
    # the run's stop (Ctrl-C / SIGTERM to the process group) finishes its iteration with these envs
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    inp, out = Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False)
    try:
        serve(inp, out)
    except (EOFError, BrokenPipeError):
        pass
