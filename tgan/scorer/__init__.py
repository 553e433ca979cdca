"""The scorer: a BERT masked-LM pre-trained once per data set that scores CA and PLL for every row
of Table 1. ``python -m tgan.scorer`` trains one (``__main__.py``); ``train.py`` holds the library."""
from tgan.scorer.train import (SCORER_META, ScorerConfig, checkpoint_scorer, is_scorer, load_scorer, scorer_for,
                               train_scorer)

__all__ = ["SCORER_META", "ScorerConfig", "checkpoint_scorer", "is_scorer", "load_scorer", "scorer_for",
           "train_scorer"]
