"""``python -m crosscoder.analysis <command>``: see `crosscoder.analysis.cli`."""

from crosscoder.analysis.cli import main
from crosscoder.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
