"""W&B's own errors at `wandb.init` (a rejected key, no server) become one line naming the fix, in training and in
the analysis."""

from __future__ import annotations

import pytest
import wandb

from crosscoder.analysis.export.wandb_run import AnalysisRunSpec, start_analysis_run
from crosscoder.errors import ConfigError
from crosscoder.xc.tracking import init_wandb


@pytest.fixture
def rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(**kwargs: object) -> None:
        raise wandb.errors.CommError("Invalid API key: permission denied\n(details on a second line)")

    monkeypatch.setattr(wandb, "init", fail)


@pytest.mark.usefixtures("rejected")
def test_init_wandb_turns_a_rejected_key_into_one_line() -> None:
    with pytest.raises(ConfigError) as err:
        init_wandb(project="p", mode="online")
    msg = str(err.value)
    assert "\n" not in msg
    assert "CommError: Invalid API key" in msg and "WANDB_API_KEY" in msg and "logging=offline" in msg


@pytest.mark.usefixtures("rejected")
def test_the_analysis_run_raises_the_same_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = AnalysisRunSpec(mode="online", project="p", entity=None, group=None, name="a", config={}, train=None)
    with pytest.raises(ConfigError, match="W&B could not start the online run"):
        start_analysis_run(spec, tmp_path)


def test_other_errors_are_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(**kwargs: object) -> None:
        raise RuntimeError("a bug, not a user error")

    monkeypatch.setattr(wandb, "init", bug)
    with pytest.raises(RuntimeError):
        init_wandb(project="p", mode="offline")
