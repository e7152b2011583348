"""The functional core: pure decisions, no I/O, `now` always passed in.

Import the modules themselves (`core.decide`, `core.config`): the package imports nothing, so
reading the settings (which need only `core.config`) does not load the decision."""
