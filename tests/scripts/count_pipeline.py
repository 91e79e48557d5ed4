"""Counting every call: a fixed workload over the image pipeline, then the local answers.

Run with argv ``[report.json, out.pstats]``: writes ``callspan.report(format="json")`` and
``callspan.to_pstats`` there before exiting (the metrics go out at exit). The expected counts are
in tests/test_counting.py (``EXPECTED``); keep the two in step.
"""

import sys

import callspan
import imgpipe

image = imgpipe.Image(8, 8)
rotator = imgpipe.Rotator()
scaler = imgpipe.Scaler()
for _ in range(30):
    rotator.rotate_image(image)
for _ in range(20):
    scaler.scale_image(image)
for _ in range(10):
    imgpipe.FastScaler.thumbnail(image)
for _ in range(7):
    imgpipe.rotate_image(image)
pipeline = imgpipe.Pipeline()
for _ in range(5):
    pipeline.process(image)
for _ in range(3):
    pipeline.process_or_placeholder(b"xxxx")
for _ in range(2):
    try:
        pipeline.process_corrupt(b"xxxx")
    except imgpipe.CorruptImageError:
        pass

callspan.report(sys.argv[1], format="json")
callspan.to_pstats(sys.argv[2])
