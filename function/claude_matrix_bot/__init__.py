"""claude-matrix-bot: Claude usage-limit alerts into an encrypted Matrix room."""

__version__ = "0.1.0"
