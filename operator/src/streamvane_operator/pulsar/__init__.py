"""Pulsar admin REST client, its errors, and an in-memory fake for tests."""
