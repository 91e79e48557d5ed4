"""Image pipeline run: one hot function (Transformer.apply_transform) reached from many call sites.

Each call site in imgpipe.py, presets.py and here is marked ``# CALL:<name>``; the test expects
one span per call with that call site as its caller. Run directly, so this file's names are
``__main__.…``.
"""

import importlib
import os
import sys
import threading
import time

import callspan
import imgpipe
from imgpipe import FastScaler, Image, Rotator, Scaler, Transformer
from scriptkit import finish, first_line, report

START_NS = time.time_ns()
# Imported only now, so that the span presets.py makes while being imported falls after START_NS.
presets = importlib.import_module("presets")


def main():
    image = Image(640, 480)
    rotator, scaler = Rotator(), Scaler()
    rotator.rotate_image(image)
    scaler.scale_image(image)
    rotator.run(image)  # base-class method: caller class Rotator
    scaler.run(image)  # base-class method: caller class Scaler
    Scaler.thumbnail(image)  # classmethod: caller class Scaler
    FastScaler.thumbnail(image)  # inherited classmethod: caller class FastScaler
    Scaler.preview(image)  # staticmethod: no caller class
    imgpipe.rotate_image(image)  # plain functions: no caller class
    imgpipe.scale_image(image)

    def via_closure(img):
        return rotator.apply_transform(img, "closure")  # CALL:closure

    via_closure(image)


main()
Rotator().apply_transform(Image(2, 2), "direct")  # CALL:module_level

report(
    start_ns=START_NS,
    end_ns=time.time_ns(),
    pid=os.getpid(),
    executable=sys.executable,
    script_file=__file__,
    imgpipe_file=imgpipe.__file__,
    presets_file=presets.__file__,
    apply_transform_first_line=first_line(Transformer.__dict__["apply_transform"]),
    thread_ident=threading.get_ident(),
    thread_native_id=threading.get_native_id(),
    thread_name=threading.current_thread().name,
    callspan_version=getattr(callspan, "__version__", None),
)
finish()
