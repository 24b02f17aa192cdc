"""The tamper-evident audit log: append, verify, export, report."""
