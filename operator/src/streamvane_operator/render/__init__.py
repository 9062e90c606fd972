"""Pure functions: a spec -> Kubernetes objects, WorkerConfig and Pulsar topology."""
