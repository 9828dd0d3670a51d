"""Training: the Siamese encoder, losses, batch sampling, checkpoints and the training loop.

``train`` (the loop) uses ``settings`` (TrainConfig), ``steps`` (a step, an epoch, a
validation pass), ``sampling`` and ``loader``/``resident`` (the batches),
``distributed`` (ranks, DDP), ``resume`` and ``checkpoint`` (last.pt, best.pt) and
``run_files`` (the run folder's other files); ``profiles`` names settings.
"""
