"""Training: the Siamese encoder, losses, batch sampling, checkpoints and the training loop."""
