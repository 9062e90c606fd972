"""The local stack: real Pulsar, etcd + kube-apiserver and Triton on 127.0.0.1, no Docker.

Production runs these as managed services; here they run as local processes built or fetched
once into a cache (``$STREAMVANE_CACHE``, default ``~/.cache/streamvane``). Tests, the demo and
``make stack-up`` all go through this package.
"""

from streamvane_stack.stack import Endpoints, Stack

__all__ = ["Endpoints", "Stack"]
