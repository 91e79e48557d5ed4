"""A small image pipeline: the hot function with many callers that callspan exists for.

``Transformer.apply_transform`` is traced and called from instance methods (some defined on
the base class), a classmethod, a staticmethod, plain functions and module-level code. Every
call site carries a ``# CALL:<name>`` marker; tests find the expected ``caller.line.number`` by
searching for it, so lines can move freely. Keep each marked call on one line (a test checks).
``Pipeline`` nests traced calls and ``decode`` raises, for parenting and error tests.

Imported (not run) by the scripts, so its names are module-qualified as ``imgpipe.…``.
"""

import callspan


class CorruptImageError(Exception):
    """Raised by decode(); a non-builtin exception type for the exception-event tests."""


class Image:
    def __init__(self, width, height, angle=0):
        self.width = width
        self.height = height
        self.angle = angle
        self.checksum = None


class Transformer:
    op = "identity"

    @callspan.trace
    def apply_transform(self, image, op):
        """Apply one operation to an image; the hot function whose callers we want to see."""
        if op in ("rotate", "closure", "direct"):
            return Image(image.height, image.width, (image.angle + 90) % 360)
        if op in ("scale", "thumbnail", "preview", "identity", "warmup"):
            return Image(max(1, image.width // 2), max(1, image.height // 2), image.angle)
        raise ValueError(f"unknown op {op!r}")  # RAISE:unknown_op

    def run(self, image):
        # Defined on the base class: called on a Rotator, the caller class must be imgpipe.Rotator.
        return self.apply_transform(image, self.op)  # CALL:base_run


class Rotator(Transformer):
    op = "rotate"

    def rotate_image(self, image):
        return self.apply_transform(image, "rotate")  # CALL:rotator_rotate


class Scaler(Transformer):
    op = "scale"

    def scale_image(self, image):
        return self.apply_transform(image, "scale")  # CALL:scaler_scale

    @classmethod
    def thumbnail(cls, image):
        return cls().apply_transform(image, "thumbnail")  # CALL:scaler_classmethod

    @staticmethod
    def preview(image):
        # The first argument is an object but not `self`: a staticmethod has no caller class.
        shared = SHARED_TRANSFORMER
        return shared.apply_transform(image, "preview")  # CALL:scaler_static


class FastScaler(Scaler):
    """Inherits thumbnail(): called as FastScaler.thumbnail, the caller class is FastScaler."""


SHARED_TRANSFORMER = Transformer()


def rotate_image(image):
    return SHARED_TRANSFORMER.apply_transform(image, "rotate")  # CALL:func_rotate


def scale_image(image):
    return SHARED_TRANSFORMER.apply_transform(image, "scale")  # CALL:func_scale


# --- nesting and errors -------------------------------------------------------------------------


@callspan.trace
def checksum(image):
    return (image.width * 31 + image.height) * 31 + image.angle


@callspan.trace
def finalize(image):
    image.checksum = checksum(image)  # CALL:finalize_checksum
    return image


LAST_RAISED = None  # the exact object decode() raised, for identity checks in the scripts


@callspan.trace
def decode(data):
    global LAST_RAISED
    LAST_RAISED = CorruptImageError(f"bad header: {bytes(data[:4])!r}")
    raise LAST_RAISED  # RAISE:decode


class Pipeline:
    def __init__(self):
        self.rotator = Rotator()
        self.scaler = Scaler()

    @callspan.trace
    def process(self, image):
        # rotate_image/scale_image are not traced: apply_transform's parent is still process.
        image = self.rotator.rotate_image(image)  # CALL:pipeline_rotate
        image = self.scaler.scale_image(image)  # CALL:pipeline_scale
        return finalize(image)  # CALL:pipeline_finalize

    @callspan.trace
    def process_corrupt(self, data):
        return decode(data)  # CALL:pipeline_decode_propagates

    @callspan.trace
    def process_or_placeholder(self, data):
        try:
            return decode(data)  # CALL:pipeline_decode_caught
        except CorruptImageError:
            return Image(1, 1)
