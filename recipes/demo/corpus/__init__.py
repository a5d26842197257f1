"""Pieces of the offline demo corpus generator (recipes/demo/make_corpus.py): voices and texts."""
