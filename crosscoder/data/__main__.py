"""``python -m crosscoder.data <command>``: see `crosscoder.data.cli`."""

import os

from crosscoder.data.cli import main
from crosscoder.errors import run_cli

if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_cli(main)
