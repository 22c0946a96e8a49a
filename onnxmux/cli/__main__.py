"""``python -m onnxmux.cli``: the same as the ``onnxmux`` command."""

import sys

from onnxmux.cli import main

sys.exit(main())
