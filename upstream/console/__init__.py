"""The operations console: the dashboard, its charts, and notices to staff."""
