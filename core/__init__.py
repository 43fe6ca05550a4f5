"""Marketplace browser core: cleaning, search, models and the CLI (no Streamlit here)."""
