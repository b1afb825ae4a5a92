"""Metrics, SHAP explanations, the reviewer report and monitoring."""
