"""Bark through transformers: settings, the synthesizer, the batching engine, the static decoder."""
