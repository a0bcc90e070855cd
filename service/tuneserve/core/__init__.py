"""Business logic: datasets, the model registry, fine-tuning jobs, evaluation and inference. No gRPC in here."""
