"""Model registry and promotion: versions copied out of checkpoints, aliases moved by conditional writes."""
