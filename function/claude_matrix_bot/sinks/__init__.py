"""Alert sinks: `matrix` (default, end-to-end encrypted) and `stdout` (JSON lines)."""
