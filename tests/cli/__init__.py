"""Tests of cli/: the command line and its JSON contracts."""
