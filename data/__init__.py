"""Bundled sample data and its deterministic generator."""
