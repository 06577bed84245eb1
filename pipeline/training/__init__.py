"""Training: the loop, checkpoints and exact resume, LR schedule, validation, run logs, torchrun plumbing."""
