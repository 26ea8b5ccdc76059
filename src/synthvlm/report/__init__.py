"""Dataset quality: the HTML report of a run and `score-dataset` for any image-caption dataset (Table 4)."""
