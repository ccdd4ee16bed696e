"""Training: the torchrun target (main.py), its loop, checkpoints and metrics, and the TorchX launcher."""
