"""A traced function looks like the function it wraps: introspection, attributes read and written
through, implicit class/static methods, isinstance, and the decoration-time errors and names."""

import copy
import functools
import inspect
import pickle
import types

import callspan
from scriptkit import finish, report


@callspan.trace
def scale(value, factor=2, *, offset=0) -> int:
    """Scale a value."""
    return value * factor + offset


def make_counter():
    count = 0

    @callspan.trace
    def bump():
        nonlocal count
        count += 1
        return count

    return bump


class Registry:
    @callspan.trace
    def __init_subclass__(cls, tag=None, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.tag = tag

    @callspan.trace
    def __class_getitem__(cls, item):
        return f"{cls.__name__}[{item.__name__}]"

    @callspan.trace
    def __new__(cls, *args):
        instance = super().__new__(cls)
        instance.args = args
        return instance

    @classmethod
    @callspan.trace
    def explicit(cls):
        return cls.__name__


class Plugin(Registry, tag="plug"):
    pass


def error_of(decorate):
    try:
        decorate()
    except TypeError as error:
        return str(error)
    return None


def main():
    counter = make_counter()
    before = scale(3)  # CALL:scale_default
    scale.__defaults__ = (10,)
    scale.__kwdefaults__ = {"offset": 1}
    after = scale(3)  # CALL:scale_changed
    report(
        before=before,
        after=after,
        written_through=scale.__wrapped__.__defaults__ == (10,)
        and scale.__wrapped__.__kwdefaults__ == {"offset": 1},
        code_is_wrapped=scale.__code__ is scale.__wrapped__.__code__,
        globals_is_module=scale.__globals__ is globals(),
        closure_cell=counter.__closure__[0].cell_contents == 0 and counter() == 1,
        annotations=scale.__annotations__ == {"return": int},
        signature=str(inspect.signature(scale)),
        fullargspec=list(inspect.getfullargspec(scale).args),
        getfile=inspect.getfile(scale) == __file__,
        getsourcefile=inspect.getsourcefile(scale) == __file__,
        getsource_has_def="def scale(value" in inspect.getsource(scale),
        unwrap=inspect.unwrap(scale) is scale.__wrapped__,
        isfunction=inspect.isfunction(scale) and isinstance(scale, types.FunctionType),
        real_type=type(scale).__name__,
        pickles=pickle.loads(pickle.dumps(scale)) is scale,
        copies=copy.copy(scale) is scale and copy.deepcopy(scale) is scale,
        class_getitem=Plugin[int],
        init_subclass=Plugin.tag,
        new_args=Plugin(1, 2).args,
        explicit=Plugin.explicit(),
        traced_class_is_not_function=not isinstance(callspan.trace(dict), types.FunctionType),
        property_error=error_of(lambda: callspan.trace(property(lambda self: 1))),
        cached_property_error=error_of(
            lambda: callspan.trace(functools.cached_property(lambda self: 1))
        ),
    )
    traced_class = callspan.trace(dict)
    traced_class.__annotations__ = {"note": str}  # its own attribute, not dict's
    report(
        class_attributes_stay_on_the_wrapper=traced_class.__annotations__ == {"note": str}
        and "__annotations__" not in vars(dict),
        class_has_no_code=not hasattr(traced_class, "__code__"),
    )
    namespace = {}
    exec("def anonymous():\n    return 7\n", namespace)
    anonymous = callspan.trace(namespace["anonymous"])
    report(anonymous=anonymous())  # CALL:anonymous
    # A caller whose globals lack __name__ as well: named by its bare qualified name too.
    caller_namespace = {"anonymous": anonymous}
    exec("def anonymous_caller():\n    return anonymous()\n", caller_namespace)
    report(anonymous_from_exec=caller_namespace["anonymous_caller"]())


main()
finish()
