"""The `billing` command: an entry point beside the core that only calls its services and read side."""
