"""Kubernetes API access for the reconcilers, its errors, and an in-memory fake for tests."""
