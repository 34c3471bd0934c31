"""After the levels: exact work on the matching.

Exact assignment in the leaves (:mod:`.leaves`), re-solves over windows of neighbouring pairs
(:mod:`.windows`) and the exact polish on a sparse graph of candidate partners (:mod:`.polish`).
"""
