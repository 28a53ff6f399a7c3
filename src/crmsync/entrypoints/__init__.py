"""Entry points: the CLI (and later the webhook app and the scheduler)."""
