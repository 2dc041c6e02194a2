"""A registry writer process for the concurrency and crash tests.

`python -m tests.registry.worker push ROOT SAVED_MODEL` pushes once; `... churn ROOT SAVED_MODEL N SEED`
pushes N times, moving the default and an alias and deleting at random in between, and prints what it
pushed and deleted as JSON. `... crash ROOT SAVED_MODEL POINT` pushes and SIGKILLs itself at POINT:
`locked` (just after taking the writer lock, its copy staged) or `published` (the version directory
renamed into place, state.json not yet written): a real kill at an exact point of the push.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys

from mlpipe.errors import NotFoundError, RegistryConflictError
from mlpipe.registry import Registry, open_registry


def churn(reg: Registry, saved_model: str, rounds: int, seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    pushed, deleted = [], []
    for _ in range(rounds):
        pushed.append(reg.push(saved_model, {"extra": {"seed": seed}}, promote=rng.random() < 0.5).name)
        names = [v.name for v in reg.list_versions()]
        try:
            reg.set_default(rng.choice(names))
            reg.set_alias(f"w{seed}", rng.choice(names))
        except NotFoundError:
            pass  # another worker deleted it since the listing: refusing is correct
        if rng.random() < 0.3:
            victim = rng.choice(pushed)
            try:
                reg.delete(victim)
                deleted.append(victim)
            except (RegistryConflictError, NotFoundError):
                pass  # it is the default or aliased right now: refusing is the rule being tested
    return {"pushed": pushed, "deleted": deleted}


CRASH_POINTS = {"locked": "clean_leftovers", "published": "publish"}


def crash_after(storage_cls, point: str) -> None:
    """Make the storage method named by `point` SIGKILL this process right after it returns."""
    method = CRASH_POINTS[point]
    original = getattr(storage_cls, method)

    def then_die(self, *args, **kwargs):
        original(self, *args, **kwargs)
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    setattr(storage_cls, method, then_die)


def main(argv: list[str]) -> int:
    action, root, saved_model = argv[:3]
    reg = open_registry(root, "mnist")
    if action == "crash":
        crash_after(type(reg.storage), argv[3])
        reg.push(saved_model)
        return 3  # not reached: the push kills this process
    if action == "push":
        print(reg.push(saved_model).name)
    else:
        print(json.dumps(churn(reg, saved_model, int(argv[3]), int(argv[4]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
