"""Exceptions through traced functions: recorded on the span, propagated to the caller unchanged.

- process_corrupt → decode: both raise (decode's CorruptImageError passes through process_corrupt);
- process_or_placeholder → decode: decode raises, the parent catches it;
- apply_transform with an unknown op raises the builtin ValueError.
"""

import imgpipe
from imgpipe import CorruptImageError, Image, Pipeline, Rotator
from scriptkit import finish, report


def innermost_frame(error):
    traceback = error.__traceback__
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    return {"function": traceback.tb_frame.f_code.co_name, "line": traceback.tb_lineno}


def main():
    pipeline = Pipeline()
    try:
        pipeline.process_corrupt(b"\x89PNX-not-a-png")  # CALL:main_corrupt
    except CorruptImageError as error:
        report(
            corrupt_is_same_object=error is imgpipe.LAST_RAISED,
            corrupt_type=type(error).__module__ + "." + type(error).__qualname__,
            corrupt_message=str(error),
            corrupt_innermost=innermost_frame(error),
        )

    placeholder = pipeline.process_or_placeholder(b"junk")  # CALL:main_caught
    report(placeholder_size=[placeholder.width, placeholder.height])

    try:
        Rotator().apply_transform(Image(1, 1), "shear")  # CALL:main_shear
    except ValueError as error:
        report(
            value_error_exact_type=type(error) is ValueError,
            value_error_args=list(error.args),
            value_error_innermost=innermost_frame(error),
        )


main()
finish()
