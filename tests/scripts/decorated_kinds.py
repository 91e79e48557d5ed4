"""Every way of decorating: functions, methods, classmethods and staticmethods (decorator above and
below), ``@callspan.trace()`` / ``(name=..., attributes=...)``, metadata, binding, non-callables.

The script records what it observed as facts; the test asserts on them and on the spans.
"""

import inspect

import callspan
from scriptkit import finish, first_line, report


@callspan.trace
def resize(image, width: int, height: int = 0, *, keep_aspect: bool = True) -> tuple:
    """Resize an image (the decorator keeps this docstring)."""
    return (image, width, height, keep_aspect)


def undecorated_resize(image, width: int, height: int = 0, *, keep_aspect: bool = True) -> tuple:
    return (image, width, height, keep_aspect)


class Catalog:
    @callspan.trace
    def lookup(self, key):
        """Find one entry."""
        return (self, key)

    @callspan.trace
    @classmethod
    def load_above(cls, key):
        return (cls, key)

    @classmethod
    @callspan.trace
    def load_below(cls, key):
        return (cls, key)

    @callspan.trace
    @staticmethod
    def digest_above(data):
        return len(data)

    @staticmethod
    @callspan.trace
    def digest_below(data):
        return len(data)

    @callspan.trace(
        name="catalog.refresh",
        attributes={"team": "imaging", "retries": 3, "ratio": 0.5, "dry_run": False},
    )
    def refresh(self):
        return "refreshed"

    @callspan.trace()
    def empty_parens(self):
        return "ok"


class SubCatalog(Catalog):
    pass


def decoration_error(target, **options):
    """The exception type name that decorating ``target`` raises, or None."""
    try:
        callspan.trace(**options)(target) if options else callspan.trace(target)
    except Exception as error:  # noqa: BLE001 (we report whatever it is)
        return type(error).__name__
    return None


def main():
    catalog = SubCatalog()
    # One call per statement, each on one line: the markers give the expected caller lines.
    lookup_on_instance = catalog.lookup("k")  # CALL:lookup_instance
    lookup_on_class = Catalog.lookup(catalog, "k")  # CALL:lookup_class
    load_above_class = Catalog.load_above("k")  # CALL:load_above_class
    load_above_instance = catalog.load_above("k")  # CALL:load_above_instance
    load_below_class = Catalog.load_below("k")  # CALL:load_below_class
    load_below_instance = catalog.load_below("k")  # CALL:load_below_instance
    digest_above_class = Catalog.digest_above(b"abc")  # CALL:digest_above_class
    digest_above_instance = catalog.digest_above(b"abcd")  # CALL:digest_above_instance
    digest_below_class = Catalog.digest_below(b"abc")  # CALL:digest_below_class
    digest_below_instance = catalog.digest_below(b"abcd")  # CALL:digest_below_instance
    refreshed = catalog.refresh()  # CALL:refresh
    empty_parens = catalog.empty_parens()  # CALL:empty_parens
    resized = resize("img", 10, keep_aspect=False)  # CALL:resize
    report(
        lookup_binds_instance=lookup_on_instance[0] is catalog,
        lookup_via_class=lookup_on_class[0] is catalog,
        load_above_on_class=load_above_class[0].__name__,
        load_above_on_instance=load_above_instance[0].__name__,
        load_below_on_class=load_below_class[0].__name__,
        load_below_on_instance=load_below_instance[0].__name__,
        digest_above_on_class=digest_above_class,
        digest_above_on_instance=digest_above_instance,
        digest_below_on_class=digest_below_class,
        digest_below_on_instance=digest_below_instance,
        refresh=refreshed,
        empty_parens=empty_parens,
        resize=list(resized),
    )
    report(
        resize_name=resize.__name__,
        resize_qualname=resize.__qualname__,
        resize_doc=resize.__doc__,
        resize_module=resize.__module__,
        resize_wrapped_is_function=inspect.isfunction(getattr(resize, "__wrapped__", None)),
        resize_wrapped_name=getattr(getattr(resize, "__wrapped__", None), "__name__", None),
        resize_signature=str(inspect.signature(resize)),
        expected_resize_signature=str(inspect.signature(undecorated_resize)),
        lookup_qualname=Catalog.lookup.__qualname__,
        lookup_doc=Catalog.lookup.__doc__,
        bound_lookup_self_is_instance=getattr(catalog.lookup, "__self__", None) is catalog,
        bound_lookup_signature=str(inspect.signature(catalog.lookup)),
        load_above_signature=str(inspect.signature(Catalog.load_above)),
        load_below_signature=str(inspect.signature(Catalog.load_below)),
        digest_above_signature=str(inspect.signature(Catalog.digest_above)),
        non_callable_int=decoration_error(42),
        non_callable_object=decoration_error(object()),
        non_callable_with_options=decoration_error(42, name="x"),
        first_lines={
            "resize": first_line(resize),
            "Catalog.lookup": first_line(Catalog.__dict__["lookup"]),
            "Catalog.load_above": first_line(Catalog.__dict__["load_above"]),
            "Catalog.load_below": first_line(Catalog.__dict__["load_below"]),
            "Catalog.digest_above": first_line(Catalog.__dict__["digest_above"]),
            "Catalog.digest_below": first_line(Catalog.__dict__["digest_below"]),
            "Catalog.refresh": first_line(Catalog.__dict__["refresh"]),
            "Catalog.empty_parens": first_line(Catalog.__dict__["empty_parens"]),
        },
    )


main()
finish()
