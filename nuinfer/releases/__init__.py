"""Readers for published experimental data releases (binned data, templates, exposures)."""
