"""Evaluation: sacreBLEU metrics with signatures, confidence intervals and BLEU by source length."""
