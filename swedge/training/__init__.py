"""Training: the switchable trainer, its config, torchrun/DDP plumbing and the CPU contention guards."""
