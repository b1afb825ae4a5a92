"""Metrics, SHAP explanations, the reviewer report, backtests and monitoring."""
