"""hpsearch service: the space format, the study runner, tracking, the study registry and the CLI."""
