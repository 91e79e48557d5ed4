"""Nested traced calls: Pipeline.process → apply_transform ×2 and finalize → checksum.

Two root calls, so two traces of five spans each.
"""

from imgpipe import Image, Pipeline
from scriptkit import finish

pipeline = Pipeline()


def main():
    pipeline.process(Image(640, 480))  # CALL:main_process_first
    pipeline.process(Image(320, 200))  # CALL:main_process_second


main()
finish()
