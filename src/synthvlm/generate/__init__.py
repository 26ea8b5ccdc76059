"""Text-to-image generation: the diffusers engine that turns caption batches into validated, seeded images."""
