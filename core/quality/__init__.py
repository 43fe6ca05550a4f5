"""Finding likely mislabelled products: out-of-fold predictions scored with cleanlab."""
