"""Optional alibi-detect for the comparison benchmarks: its module, or why it is skipped."""

from __future__ import annotations

import os
import warnings
from typing import Any


def alibi_cd() -> tuple[Any, str | None]:
    """(alibi_detect.cd, None) when importable, else (None, the reason it was skipped)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import alibi_detect.cd as cd
    except Exception as exc:  # ImportError, or a broken optional dependency underneath it
        reason = (
            f"alibi-detect not importable ({type(exc).__name__}: {exc}); "
            "see benchmarks/README.md"
        )
        print(f"  alibi-detect skipped: {reason}")
        return None, reason
    return cd, None


def single_threaded() -> object:
    """Limits BLAS (numpy, scipy) and torch to one thread; keep the returned handle alive.

    The two cores are shared with other users: a multi-threaded contender then waits on
    busy cores (torch's MMD online detector ran ~20x slower with 2 threads under load), so
    every contender gets one thread and the comparison measures the algorithms.
    """
    from threadpoolctl import threadpool_limits

    handle = threadpool_limits(limits=1)
    try:
        import torch
    except ImportError:
        return handle
    torch.set_num_threads(1)
    return handle
