"""A local server that behaves like both Cora and Recotap, strictly, for demos and tests.

>>> from recocora.sandbox import Sandbox, FaultConfig
>>> with Sandbox(seed="demo", cora_window=0.5) as sb:       # doctest: +SKIP
...     sb.set_faults(FaultConfig(seed=1, p_503=0.1))
...     sb.cora_base_url, sb.recotap_base_url
"""

from __future__ import annotations

from ._cora import RateWindow
from ._faults import FaultConfig
from ._server import RequestRecord, Sandbox

__all__ = ["FaultConfig", "RateWindow", "RequestRecord", "Sandbox"]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
