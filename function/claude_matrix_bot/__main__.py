"""`python -m claude_matrix_bot run|status`."""

import sys

from .cli import main

sys.exit(main())
