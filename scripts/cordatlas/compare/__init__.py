"""The cord-vs-adult comparison with donors as the unit: DE, composition, signatures, axis, enrichment."""
