"""The shipped model weights (safetensors + JSON metadata); see docs/model.md."""
