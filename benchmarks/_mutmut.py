"""Start mutmut 2 with one fix: it crashes recording a mutant of some multi-line statements.

mutmut 2.5 looks up a mutant's source line by its text and number when it stores the result; for
some lines inside a multi-line call that lookup finds nothing and the whole run stops with
"Attribute Mutant.line is required". Here the lookup falls back to the line number alone, then to
the text alone, and creates the mutant's row if it is missing. Used by ``benchmarks/mutation.sh``.
"""

from __future__ import annotations

import sys

from mutmut import cache
from mutmut.__main__ import climain
from pony.orm import db_session


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
