"""Running a training job where it was launched: the data of a DDP job's ranks, checks before any work, Slurm."""
