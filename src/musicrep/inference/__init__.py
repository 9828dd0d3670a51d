"""Inference: using a trained (or the shipped) model.

The model API (``embed``) with its front end (``frontend``), cross-file batching
(``batching``) and file discovery (``discovery``); song vectors of feature stores and
their cache (``store_embeddings``); the ``musicrep embed`` job and its tables
(``embed_job``, ``outputs``); catalogs embedded for search (``embed_catalog``); the
search index (``index`` to read and query, ``index_build`` to write, ``faiss_index``
for the faiss kinds); ONNX export (``export``); the shipped model (``pretrained``).
"""
