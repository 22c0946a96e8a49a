"""The module paths onnxruntime programs import (``onnxruntime.capi....``), answered by onnxmux."""
