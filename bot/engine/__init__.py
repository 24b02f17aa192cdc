"""The run engine: pure decisions (state, planner, approvals) plus the driver that applies them."""
