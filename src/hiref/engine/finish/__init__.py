"""After the levels: exact work on the matching.

Exact assignment in the leaves (:mod:`.leaves`), re-solves over windows of neighbouring pairs
(:mod:`.windows`), and the exact finish on one sparse graph of candidate partners
(:mod:`.polish`: the auction of :mod:`.auction` from the prices of :mod:`.prices`), with the
optimality certificate of :mod:`.certificate`.
"""
