"""Stage-1 (projector) pretraining on synthvlm exports, and the evaluation hand-off to lmms-eval."""
