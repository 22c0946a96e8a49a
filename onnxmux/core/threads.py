"""Thread settings: numpy's BLAS thread pool follows ``intra_op_num_threads``."""

from __future__ import annotations


def limit_blas_threads(threads: int) -> None:
    """Cap the BLAS library's threads (process-wide, as BLAS itself is) when ``threads`` > 0.

    The CPU provider's matrix products and convolutions run inside the BLAS library numpy
    links; on a shared or small machine its default of one thread per core can be many
    times slower than one thread, so the session option is honoured as onnxruntime's is.
    """
    if threads > 0:
        import threadpoolctl  # only sessions that set a thread count need it

        threadpoolctl.threadpool_limits(limits=threads, user_api="blas")
