"""Tests of services/: review workflow, search in every mode, listings, active models."""
