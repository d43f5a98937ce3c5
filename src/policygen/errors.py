"""One exception type for every error a user can cause; the CLI prints it as one line."""


class PolicygenError(Exception):
    """A user-facing error: the message names the bad value and what would be accepted."""


class EnvFault(PolicygenError):
    """An environment misbehaved (non-finite reward or observation, an exception, a hang)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or ``kill``'s stop), handled as Ctrl-C: engines closed, the resume hint printed."""


def raise_terminated(signum, frame):
    """SIGTERM handler: raise ``Terminated``."""
    raise Terminated
