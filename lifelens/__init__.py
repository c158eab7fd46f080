"""LifeLens: explainable deep learning for life-science images (a teaching tool, not a diagnostic device)."""
__version__ = "0.1.0"
