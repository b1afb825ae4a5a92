"""Time splits, Optuna tuning, the final fit and calibration; MLflow tracking at the edge."""
