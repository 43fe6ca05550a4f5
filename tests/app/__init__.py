"""Tests of pages/ and ui/: an AppTest per page, and the app in a real browser."""
