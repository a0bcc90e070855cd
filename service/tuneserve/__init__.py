"""tuneserve: fine-tune pretrained models and serve them over gRPC."""

__version__ = "0.1.0"
