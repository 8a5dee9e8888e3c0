"""Fork awareness for Python-level state.

A child made by ``os.fork()`` (``multiprocessing``'s fork start method, PySpark's
daemon, PyTorch ``DataLoader`` workers) has one thread and a copy of every
object: locks that another thread of the parent held stay locked, worker
threads are gone, queued work belongs to the parent. Objects that hold such
state register a method here; it runs in the child right after the fork, while
the child still has one thread. The native core does the same for its own
state (``csrc/core/fork.hpp``): connections are never shared with the parent.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

_objects: "weakref.WeakSet[Any]" = weakref.WeakSet()


def register(obj: Any) -> None:
    """Calls ``obj._after_fork()`` in every forked child for as long as ``obj`` lives."""
    _objects.add(obj)


def _run_hooks() -> None:
    for obj in list(_objects):
        obj._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_run_hooks)
