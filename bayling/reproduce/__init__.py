"""Rebuilding a registered model version from its record, and saying whether it came out the same: the record
read and restored (record.py), the work tree it is rebuilt in (work_tree.py), and the rebuild compared with the
record and explained (comparison.py). May import core, config, models and the stage packages (register's lineage
tags); nothing in bayling imports it, only flows.reproduce."""
