"""Reconcilers: desired vs observed, applied through the Kubernetes and Pulsar clients."""
