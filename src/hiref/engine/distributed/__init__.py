"""Running the engine over several processes.

Collectives (:mod:`.comm`) and the sharding of co-clusters (:mod:`.sharding`). The driver
itself is :mod:`hiref.engine.driver`, the same for one process and several.
"""

from __future__ import annotations

from hiref.engine.distributed.comm import SINGLE, Comm, SingleProcess, connect, row_ranges, this_process_rows

__all__ = ["SINGLE", "Comm", "SingleProcess", "connect", "row_ranges", "this_process_rows"]
