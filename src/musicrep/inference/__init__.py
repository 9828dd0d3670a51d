"""Inference: song embeddings for any audio, the embedding cache and jobs, the search index, export, the shipped model."""
