"""Tests of Across the layers: hostile input, fuzzing, crashes, the shared data set, docs and the layers contract."""
