"""What runs jobs, beside the core a notebook reader needs: the training loop and the training run (signals,
fallback saves), `--name=value` overrides and recipe files, the sweep over seeds, the verifier's command line.
A notebook never imports this package: each command loads what it uses."""
