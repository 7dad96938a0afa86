"""Deployment jobs: the request, the queue (Redis Streams or in-process), the worker and its job processes."""
