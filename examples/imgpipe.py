"""A tiny image pipeline whose hot function, ``Transformer.apply_transform``, has two callers.

``Rotator.rotate_image`` and ``Scaler.scale_image`` both call the inherited, traced
``apply_transform``. A profiler says *that* it is hot; callspan says who called it, from which
line, on which object, and how long each call took.
"""

from __future__ import annotations

import math

import callspan


class Transformer:
    """Applies a 2x2 matrix to every pixel coordinate of an image."""

    @callspan.trace
    def apply_transform(self, pixels: list[tuple[float, float]], matrix: tuple) -> list:
        (a, b), (c, d) = matrix
        return [(a * x + b * y, c * x + d * y) for x, y in pixels]


class Rotator(Transformer):
    def rotate_image(self, pixels, degrees):
        r = math.radians(degrees)
        matrix = ((math.cos(r), -math.sin(r)), (math.sin(r), math.cos(r)))
        return self.apply_transform(pixels, matrix)


class Scaler(Transformer):
    def scale_image(self, pixels, factor):
        return self.apply_transform(pixels, ((factor, 0.0), (0.0, factor)))


def make_image(size: int) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x in range(size) for y in range(size)]
