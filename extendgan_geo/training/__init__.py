"""`egan-fill train`: training data from rasters on disk, the GAN training loop, checkpoints."""
