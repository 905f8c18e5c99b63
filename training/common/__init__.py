"""What every training algorithm uses: the networks, environments and their worker processes, fast rendering,
evaluation on fixed seeds, run directories, checkpoints, warm starts and checkpoint selection."""
