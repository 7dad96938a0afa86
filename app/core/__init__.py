"""Settings, authentication, metrics and the wiring of the service."""
