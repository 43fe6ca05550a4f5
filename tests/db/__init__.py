"""Tests of db/: import, schema, keyword search, concurrent writers."""
