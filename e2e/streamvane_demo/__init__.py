"""The demo: the sample content-understanding pipeline on the real local stack (`make demo`)."""
