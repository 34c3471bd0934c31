"""The compiled regrouping of :meth:`.blocks.Blocks.split` on the CPU: a counting sort by child."""

from __future__ import annotations

import numba


@numba.njit(cache=True, nogil=True)
def regroup(index, pos, mask, labels, child_start, child_end, out):  # pragma: no cover
    """Write ``index[pos[b, w]]`` for every valid entry, block after block, child after child, in entry order.

    ``child_start`` / ``child_end`` (B, r): where each child's points go in ``out``. Returns
    False (``out`` partly written) where a child gets more or fewer points than that.
    """
    cursor = child_start.copy()
    for b in range(pos.shape[0]):
        for w in range(pos.shape[1]):
            if mask[b, w]:
                z = labels[b, w]
                at = cursor[b, z]
                if at >= child_end[b, z]:
                    return False
                out[at] = index[pos[b, w]]
                cursor[b, z] = at + 1
    for b in range(cursor.shape[0]):
        for z in range(cursor.shape[1]):
            if cursor[b, z] != child_end[b, z]:
                return False
    return True
