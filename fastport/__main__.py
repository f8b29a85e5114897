"""``python -m fastport``."""

import sys

from fastport.cli import main

sys.exit(main())
