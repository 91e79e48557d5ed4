"""Traced functions called back from C (map, sorted's key): the caller is the Python frame that
called map()/sorted(), which is the frame running when the C code calls back."""

import callspan
from scriptkit import finish, report

PIXELS = [5, 3, 9, 1]


@callspan.trace
def brighten(pixel):
    return pixel * 2


@callspan.trace
def darkness(pixel):
    return -pixel


def brighten_all(pixels):
    return list(map(brighten, pixels))  # CALL:map


def order_by_darkness(pixels):
    return sorted(pixels, key=darkness)  # CALL:sorted


def main():
    report(
        brightened=brighten_all(PIXELS),
        ordered=order_by_darkness(PIXELS),
        pixel_count=len(PIXELS),
    )


main()
finish()
