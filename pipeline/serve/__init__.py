"""Selectivity thresholds and the scorer: the light part a deployment needs (no train, no shap)."""
