"""What the child process of a job runs: the `local` and `flyte` executors (these import flytekit)."""
