"""The Streamvane custom resources: pydantic models (the source of truth), CRDs, validation."""
