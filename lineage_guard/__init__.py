"""lineage_guard: governed reads."""
