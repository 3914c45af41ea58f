"""Packaging service: projects, model versions and model packaging jobs."""
