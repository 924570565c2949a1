"""Per-process state: what a forked worker must not inherit from its parent (locks, counts, connections)."""

import os
import weakref
from collections.abc import Callable
from typing import TypeVar

Owner = TypeVar("Owner")


def reset_after_fork(owner: Owner, reset: Callable[[Owner], None]) -> None:
    """Call ``reset(owner)`` in every child forked from now on, for as long as ``owner`` lives.

    The hook holds ``owner`` weakly: an app made and dropped (as in tests) is not kept alive by it.
    """
    ref = weakref.ref(owner)

    def reset_in_child() -> None:
        alive = ref()
        if alive is not None:
            reset(alive)

    os.register_at_fork(after_in_child=reset_in_child)
