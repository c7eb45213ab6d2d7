"""The Extend-GAN model in pure torch: layers, generator, discriminator, losses, checkpoints (no rasterio)."""
