"""What every stage stands on: errors, languages, storage, lineage, tracking, seeding, records, test set files and
I/O helpers."""
