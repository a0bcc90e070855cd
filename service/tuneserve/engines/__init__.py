"""Engines do the heavy work (training, export, inference runtime). They never import gRPC."""
