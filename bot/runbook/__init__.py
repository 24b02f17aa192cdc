"""The runbook language: model, loaders, templates and validation (pure: no I/O adapters)."""
