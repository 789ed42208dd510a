"""Camera to list: presets and schemas (schemas.py, plain Python) and constrained extraction (extractor.py)."""
