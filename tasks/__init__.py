"""Flyte tasks: thin typed wrappers over `edge_deploy`, one module per pipeline stage."""
