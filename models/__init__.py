"""Build the project's models (all-MiniLM-L6-v2 as ONNX) and their Triton model repositories."""
