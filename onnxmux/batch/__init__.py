"""Batch inference over datasets: ``predict`` on this machine (threads) or a Ray cluster.

See docs/batch.md. ``Predictor`` is public so that Ray Data pipelines can use it directly:
``dataset.map_batches(Predictor, fn_constructor_kwargs={"model": path}, batch_format="pyarrow")``.
"""

from onnxmux.batch.predictor import ERROR_COLUMN, Predictor
from onnxmux.batch.run import ROW_ID_COLUMN, BatchSummary, predict

__all__ = ["ERROR_COLUMN", "ROW_ID_COLUMN", "BatchSummary", "Predictor", "predict"]
