"""Packaging jobs: accepted as a plan, kept in the job store, run by detached workers as named pipeline steps."""
