"""Make the tests folder importable as plain modules (``from helpers import ...``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from test_providers import register_all  # noqa: E402

register_all()
