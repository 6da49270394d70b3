"""Tasks over the one analysis model: scans, profiles, real-data analyses."""
