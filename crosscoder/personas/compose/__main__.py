"""``python -m crosscoder.personas.compose``: see :mod:`crosscoder.personas.compose.cli`."""

from crosscoder.errors import run_cli
from crosscoder.personas.compose.cli import main

if __name__ == "__main__":
    run_cli(main)
