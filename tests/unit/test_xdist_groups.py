"""`make test` runs on two pytest-xdist workers; a module's tests must stay on one worker, or a module
fixture that runs pipelines (tests/e2e/test_dev_loop.py's `loop`) is built once per worker."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict

import pytest

from mlpipe.config import REPO_ROOT

pytestmark = pytest.mark.e2e  # starts two pytest workers (~10 s)

MODULES = ("tests/unit/test_config.py", "tests/unit/test_layers.py", "tests/unit/test_rollout_config.py")


def test_each_module_runs_on_one_worker():
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v", "-p", "no:cacheprovider", *MODULES],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    workers: dict[str, set[str]] = defaultdict(set)
    for worker, module in re.findall(r"\[(gw\d+)\] .*?PASSED (tests/\S+?\.py)::", done.stdout):
        workers[module].add(worker)
    assert set(workers) == set(MODULES), done.stdout[-3000:]
    assert all(len(w) == 1 for w in workers.values()), dict(workers)
