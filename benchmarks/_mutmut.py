"""Start mutmut 2 with one fix: it crashes on mutants of some multi-line statements.

mutmut 2.5 looks up a mutant's source line in its cache by text and number; for some lines of a
multi-line call that lookup finds nothing and the whole run stops ("Attribute Mutant.line is
required", or ``assert line``). Here the lookup falls back to the line number alone, then to the
text alone, and a missing mutant row is created. Used by ``benchmarks/mutation.sh``.

It also serves the tests faster: ``serve SOCKET PYTEST_ARGS...`` imports what hiref imports
(torch, anndata, ...; not hiref itself), then for every ``ask SOCKET`` (the runner mutmut calls)
forks a child that imports the mutated hiref from source and runs pytest, and sends its exit
status back. Each mutant then skips the several seconds of importing those libraries.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time

#: Seconds a served test run may take before its child is killed (mutmut's own timeout only
#: ends the ``ask`` process), and the address space it may take (a mutant that loops forever
#: appending to a list must not exhaust a shared machine's memory).
CHILD_LIMIT = 60
CHILD_BYTES = 8 << 30


def _preload() -> None:
    """Import, in this process, every library that ``import hiref`` imports (not hiref itself)."""
    code = "import sys, hiref; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    names = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    import importlib

    for name in names:
        if name not in ("hiref", "this", "antigravity") and not name.startswith("_"):
            with contextlib.suppress(ImportError):  # a module importable only from within its package
                importlib.import_module(name)
    import matplotlib

    matplotlib.use("Agg")
    import pytest  # noqa: F401


def serve(path: str, args: list[str]) -> None:
    """Answer every connection on the unix socket ``path`` with the exit status of ``pytest args``, run in a fork."""
    # The sources compiled once, to .pyc files checked by hash (Python keeps them so): a child
    # compiles only the mutated file, and never reads a stale .pyc of a mutant of the same size
    # written in the same second (as .pyc files checked by time could).
    import compileall
    import py_compile

    for folder in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        if folder:
            compileall.compile_dir(folder, quiet=1, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    _preload()
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen()
        while True:
            conn, _ = server.accept()
            with conn:
                if conn.recv(16) == b"stop":
                    return
                pid = os.fork()
                if pid == 0:
                    signal.alarm(CHILD_LIMIT)
                    resource.setrlimit(resource.RLIMIT_AS, (CHILD_BYTES, CHILD_BYTES))
                    import pytest

                    os._exit(int(pytest.main(args)))
                _, status = os.waitpid(pid, 0)
                # mutmut 2 counts a mutant as killed only on exit status 1 or 2: a child killed by
                # its time or memory limit (or crashing) did not pass, so it answers 1.
                with contextlib.suppress(OSError):  # the runner was stopped by mutmut's own timeout
                    conn.sendall(b"0" if os.waitstatus_to_exitcode(status) == 0 else b"1")


def ask(path: str, message: bytes = b"run") -> int:
    """Ask the server on ``path`` for one test run; its exit status."""
    for attempt in range(600):  # the server may still be importing, or bound but not yet listening
        with socket.socket(socket.AF_UNIX) as conn:
            try:
                conn.connect(path)
            except (FileNotFoundError, ConnectionRefusedError):
                if attempt == 599:
                    raise
                time.sleep(0.5)
                continue
            conn.sendall(message)
            return int(conn.recv(16) or b"1") if message == b"run" else 0
    return 1


def _patch_mutmut():
    """mutmut's ``main`` with the forgiving line lookup."""
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
                if found is None:  # never registered (``cached_mutation_status`` asserts it was)
                    found = self._entity(sourcefile=kwargs["sourcefile"], line=kwargs["line"] or " ",
                                         line_number=kwargs["line_number"])  # fmt: skip
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

    return climain


if __name__ == "__mp_main__":  # mutmut's worker, spawned: it imports this file under that name
    _patch_mutmut()
elif __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2], sys.argv[3:])
    elif sys.argv[1:2] == ["ask"]:
        sys.exit(ask(sys.argv[2]))
    elif sys.argv[1:2] == ["stop"]:
        ask(sys.argv[2], b"stop")
    else:
        sys.exit(_patch_mutmut()())
