"""Train a crosscoder: `python train.py [overrides]` (Hydra). See README for groups, sweeps and Slurm.

Examples:
    python train.py                                   # embedded default: SmolLM2 base vs the demo persona organism
    python train.py -m crosscoder=batchtopk,l1 trainer.lr=1e-4,3e-4
    torchrun --nproc_per_node=2 train.py trainer.batch_size=2048
    python train.py data=cluster trainer=cluster plan=true   # cache size, memory per rank, expected time; no run
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from crosscoder.config import TrainConfig, register_configs
from crosscoder.errors import one_line_errors, run_cli
from crosscoder.launch.wandb_names import hydra_names
from crosscoder.pipeline import run_train
from crosscoder.xc.distributed import world_size_from_env
from crosscoder.xc.tracking import WandbRef

register_configs()


@hydra.main(config_path="configs", config_name="config", version_base="1.3")
@one_line_errors
def main(dict_cfg: DictConfig) -> None:
    cfg = OmegaConf.to_object(dict_cfg)
    assert isinstance(cfg, TrainConfig)
    if cfg.plan:
        from crosscoder.plan import hardware_for, plan_run

        print(plan_run(cfg, hardware_for(cfg.data.device or cfg.models.device), world_size_from_env()).render())
        return
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    cfg.logging = hydra_names(cfg.logging, cfg.name)  # W&B name from the overrides, group = the sweep
    result = run_train(cfg, run_dir)
    logging.getLogger("train").info("run folder: %s", run_dir)
    print(f"run folder: {run_dir}")
    fve = result.fve()
    if fve:
        print("FVE per model: " + ", ".join(f"{k} {v:.3f}" for k, v in fve.items()))
    ref = WandbRef.read(run_dir)
    if ref is not None and ref.sync_command():
        print(f"W&B offline run; upload with: {ref.sync_command()}")


if __name__ == "__main__":
    run_cli(main)
