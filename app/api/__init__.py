"""The HTTP API: endpoints under /api/v1, their request and response models, and error answers."""
