"""Answering instances with a trained run: the answer vocabulary, solve (batched, streamed) and polish."""
