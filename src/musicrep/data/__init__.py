"""Data: audio decoding, log-mel features, catalogs, feature stores, splits, dataset builders and the built-in corpus."""
