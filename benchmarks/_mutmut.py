"""Start mutmut 2 with one fix: it crashes on mutants of some multi-line statements.

mutmut 2.5 looks up a mutant's source line in its cache by text and number; for some lines of a
multi-line call that lookup finds nothing and the whole run stops ("Attribute Mutant.line is
required", or ``assert line``). Here the lookup falls back to the line number alone, then to the
text alone, and a missing mutant row is created. Used by ``benchmarks/mutation.sh``.
"""

from __future__ import annotations

import sys

from mutmut import cache
from mutmut.__main__ import climain
from pony.orm import db_session


class _Lines:
    """``cache.Line`` with a forgiving ``get``; everything else goes to the real entity."""

    def __init__(self, entity):
        self._entity = entity

    def __getattr__(self, name):
        return getattr(self._entity, name)

    def __call__(self, *args, **kwargs):
        return self._entity(*args, **kwargs)

    def get(self, **kwargs):
        found = self._entity.get(**kwargs)
        if found is None and {"sourcefile", "line", "line_number"} <= set(kwargs):
            found = self._entity.get(sourcefile=kwargs["sourcefile"], line_number=kwargs["line_number"])
            if found is None:
                sourcefile, text = kwargs["sourcefile"], kwargs["line"]
                found = self._entity.select(lambda x: x.sourcefile == sourcefile and x.line == text).first()
        return found


cache.Line = _Lines(cache.Line)


@cache.init_db
@db_session
def _update_mutant_status(file_to_mutate, mutation_id, status, tests_hash):
    sourcefile = cache.SourceFile.get(filename=file_to_mutate)
    line = (
        cache.Line.get(sourcefile=sourcefile, line=mutation_id.line, line_number=mutation_id.line_number)
        or cache.Line.get(sourcefile=sourcefile, line_number=mutation_id.line_number)
        or cache.Line.select(lambda x: x.sourcefile == sourcefile and x.line == mutation_id.line).first()
    )
    if line is None:
        line = cache.Line(sourcefile=sourcefile, line=mutation_id.line or " ", line_number=mutation_id.line_number)
    mutant = cache.get_or_create(cache.Mutant, line=line, index=mutation_id.index, defaults={"status": status})
    mutant.status = status
    mutant.tested_against_hash = tests_hash


cache.update_mutant_status = _update_mutant_status
if __name__ == "__main__":
    sys.exit(climain())
