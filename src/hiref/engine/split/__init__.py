"""The split step: every co-cluster of a level into ``r`` exactly balanced children.

:mod:`.level` (one process, all blocks of a level batched) and :mod:`.data_parallel` (the
points of a block spread over processes) search candidates by low-rank optimal transport
(:mod:`.lowrank`) from several starts (:mod:`.starts`), cut them into exactly balanced children
(:mod:`.balance`) and keep the candidate that separates the fewest exactly matched pairs
(:mod:`.consistency`).
"""
