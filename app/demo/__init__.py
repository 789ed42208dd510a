"""The built-in demo pair: a tiny LLaVA-layout model trained to answer questions about one coloured shape.

Trained by `make test-model` (models/train_test_model.py); SHA256SUMS identifies the committed files.
"""
