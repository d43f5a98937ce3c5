"""policygen: neural networks that output the weights of working policies on command."""

__version__ = "0.1.0"
