"""Run the MNIST pipeline locally: LocalDagRunner, MLMD SQLite, Beam DirectRunner (in_memory).

    python local_runner.py [--profile quick|full] [--no-cache] [--train-steps N ...]

Same flags as `mlpipe run`; see `python local_runner.py --help`.
"""

import sys

from mlpipe.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
