"""Scoring metrics: the paper's SSIM recipe and CLIPScore."""
