"""Flyte workflows and launch plans: wiring only; every stage is a task in `tasks/`."""
