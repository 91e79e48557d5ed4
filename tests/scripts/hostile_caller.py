"""Reading the caller must never run user code.

The callers below are instances/classes whose __repr__, __getattr__, __getattribute__ (on the
metaclass) and even __class__ are Python code that logs when it runs. A traced call from their
methods must run none of it, and caller.class.name must be the real type (not the __class__
decoy).
"""

import callspan
from scriptkit import finish, report

hooks_run = []  # names of user hooks that ran inside the measured window


class Decoy:
    pass


class LoggingMeta(type):
    def __getattribute__(cls, name):
        hooks_run.append(f"meta.__getattribute__({name})")
        return super().__getattribute__(name)

    def __repr__(cls):
        hooks_run.append("meta.__repr__")
        return "<LoggingMeta class>"


class Hostile(metaclass=LoggingMeta):
    def __repr__(self):
        hooks_run.append("__repr__")
        return "Hostile()"

    def __getattr__(self, name):
        hooks_run.append(f"__getattr__({name})")
        raise AttributeError(name)

    @property
    def __class__(self):
        hooks_run.append("__class__")
        return Decoy

    def render(self):
        hooks_run.clear()
        render_pixels(3)  # CALL:hostile_method
        return list(hooks_run)

    @classmethod
    def render_class(cls):
        hooks_run.clear()
        render_pixels(4)  # CALL:hostile_classmethod
        return list(hooks_run)


@callspan.trace
def render_pixels(count):
    return [0] * count


def main():
    hostile = object.__new__(Hostile)
    from_method = hostile.render()
    from_classmethod = type.__getattribute__(Hostile, "render_class")()
    report(
        hooks_during_method_call=from_method,
        hooks_during_classmethod_call=from_classmethod,
    )


main()
finish()
