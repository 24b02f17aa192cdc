"""Chat adapters: the console, Slack."""
