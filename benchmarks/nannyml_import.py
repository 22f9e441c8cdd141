"""Optional NannyML for the performance benchmark: its module, or why the comparison is missed."""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any


def nannyml_module() -> tuple[Any, str | None]:
    """(nannyml, None) when importable, else (None, the reason the comparison is missed).

    NannyML sends usage telemetry unless told not to: the switch is set before the import.
    """
    os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import nannyml
    except Exception as exc:  # ImportError, or a broken dependency underneath it
        reason = (
            f"NannyML not importable ({type(exc).__name__}: {exc}); run this benchmark in the "
            "NannyML virtualenv, see benchmarks/README.md"
        )
        print(f"  NannyML absent: {reason}")
        return None, reason
    logging.getLogger("nannyml").setLevel(logging.CRITICAL)
    return nannyml, None
