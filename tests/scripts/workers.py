"""A traced function importable by pool workers (spawn and forkserver re-import it)."""

import os

import callspan


@callspan.trace
def resize(i):
    return (i, os.getpid())
