"""What every stage stands on: errors, languages, storage, lineage, tracking, seeding, records and I/O helpers."""
