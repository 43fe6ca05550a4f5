"""The trained models as objects and files: the networks (heads, text CNN, combined model), the
TF-IDF keyword branch, checkpoints, the manifest of the shipped set and releasing a set."""
