"""Training: the switchable trainer, its config, torchrun/DDP plumbing and the CPU contention guards."""

# Where and how fast a run goes, not what it learns: the one list of result-neutral TrainConfig settings. A resume
# may change them (trainer) and a study's run fingerprint leaves them out (study.compare); each adds its own few on
# top. Here, torch-free, so that the study's tables can be built without torch.
RESULT_NEUTRAL = ("out", "workers", "device", "log_every")
