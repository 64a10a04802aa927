"""Checkpoint trajectories: the n+1 forecast math and checks on a checkpoint series."""
