"""synthvlm: build SynthVLM-style synthetic image-caption datasets for VLM pretraining."""

__version__ = "0.1.0"
