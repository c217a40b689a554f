"""Ledger ETL: deposits, withdrawals, user events and users into a star schema, in daily batches.

Every output partition is a pure function of (input snapshot, day), so re-runs are idempotent and a
day-by-day run produces the same tables as a full backfill.
"""
