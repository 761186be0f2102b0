"""What every stage stands on: errors, languages, storage, lineage, tracking, seeding, records (corpus rows,
conversations), test set files, the stage's side of progress, and I/O helpers. The bottom layer: imports no other
bayling package."""
