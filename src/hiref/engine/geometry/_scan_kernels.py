"""The compiled pass of :func:`.scan.smallest`: keep a tile's entries below each row's threshold.

Module-level functions, so that numba's disk cache finds them again in a new process (a kernel
defined inside a function and calling another compiled that way was compiled anew in every
process: 0.7-1.5 s a dtype).
"""

from __future__ import annotations

import numba

#: Entries of a row that the compiled pass compares at once: it takes their least first and
#: looks at them one by one only when it is below the threshold (most blocks are not): 1.5-1.8
#: times the speed of comparing each entry (a tile of 1024 x 2048, 0.2-0.8 % of entries below,
#: one thread). Each row's views of its arrays are made once, not once a block kept, and the
#: keeping is inlined: a tile with 1 % of entries below, 1.6-2.0 ms -> 1.2-1.4 ms.
BLOCK = 16


@numba.njit(cache=True, nogil=True, inline="always")
def _keep(row, t, lo, hi, offset, cols_i, vals_i, c):  # pragma: no cover
    """Keep ``row[lo:hi]``'s entries below ``t`` after the ``c`` kept (those past the room only counted)."""
    room = cols_i.shape[0]
    for j in range(lo, hi):
        v = row[j]
        if v < t:
            if c < room:
                cols_i[c] = j + offset
                vals_i[c] = v
            c += 1
    return c


@numba.njit(cache=True, nogil=True)
def collect(D, tau, offset, cols, vals, counts, lo, hi):  # pragma: no cover
    """For rows ``lo:hi`` of the tile ``D``, append the entries below ``tau`` (columns shifted by ``offset``)."""
    width = D.shape[1]
    whole = width - width % BLOCK
    for i in range(lo, hi):
        t, c, row = tau[i], counts[i], D[i]
        cols_i, vals_i = cols[i], vals[i]  # (views made once a row, not once a block kept)
        for j0 in range(0, whole, BLOCK):
            least = t  # (a NaN entry never becomes the least, and is never kept)
            for j in range(j0, j0 + BLOCK):
                v = row[j]
                least = v if v < least else least
            if least < t:
                c = _keep(row, t, j0, j0 + BLOCK, offset, cols_i, vals_i, c)
        counts[i] = _keep(row, t, whole, width, offset, cols_i, vals_i, c)
