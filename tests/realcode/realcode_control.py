"""The control wrapper: what any ``functools.wraps`` decorator changes, for comparison."""

import functools


def wrap(func):
    if isinstance(func, (classmethod, staticmethod)):
        return type(func)(wrap(func.__func__))

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper
