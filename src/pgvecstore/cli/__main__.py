"""``python -m pgvecstore.cli``: the ``pgvecstore`` command."""

import sys

from pgvecstore.cli import main

sys.exit(main())
