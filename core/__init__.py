"""Marketplace browser core: data, encoders, models, training, inference, evaluation, search indexes
and runtime helpers. The bottom layer: no Streamlit, no SQLAlchemy (see docs/architecture.md)."""
