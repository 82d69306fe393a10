"""Pieces of the training engine that are not the loop itself."""
