"""The tools that run jobs (training, sweeps, notebooks on checkpoints, the verifier), loaded only by commands."""
