"""Cluster profiles (YAML), installed as `crossrep.slurm` so `--cluster horeka` works from anywhere."""
