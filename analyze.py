"""Analyse a trained crosscoder: `python analyze.py [run_dir=<run folder>] [group.key=value ...]` (latest run by default).

Writes <run_dir>/analysis/: the latent table, ranked persona candidates with labels and evidence, an HTML report,
plots, and SAELens exports (`crosscoder.analysis.run.run_analysis`). Options are grouped as in
configs/analyze.yaml, e.g. `labels.threshold=0.4 steering.enabled=false`.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from crosscoder.analysis.config import AnalyzeConfig, check_overrides
from crosscoder.analysis.run import AnalysisResult, run_analysis
from crosscoder.config import register_configs
from crosscoder.errors import one_line_errors, run_cli

register_configs()


def print_result(result: AnalysisResult) -> None:
    """The closing lines: where the report and exports are, FVE per model and the latent classes."""
    out, shown = result.out_dir, result.presented
    if shown.report is not None:
        print(f"report:  {shown.report}")
        print(f"plots:   {len(shown.plots)} files in {out / 'plots'}")
    print(f"SAELens: {len(shown.saelens)} SAE folders in {out / 'saelens'}")
    print("FVE:     " + ", ".join(f"{k} {v:.3f}" for k, v in result.summary.fve.items()))
    print(f"classes: {result.summary.class_counts}")


@hydra.main(config_path="configs", config_name="analyze", version_base="1.3")
@one_line_errors
def main(dict_cfg: DictConfig) -> None:
    cfg = OmegaConf.to_object(dict_cfg)
    assert isinstance(cfg, AnalyzeConfig)
    print_result(run_analysis(cfg))


def cli() -> None:
    check_overrides(sys.argv[1:])  # flat keys of earlier versions: name the new key before Hydra refuses them
    main()


if __name__ == "__main__":
    run_cli(cli)
