"""Tests of core/: data, encoders and engines, models, training, inference, evaluation."""
