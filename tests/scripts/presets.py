"""Preset images built at import time, so that a traced call has module-level code as its caller.

The caller of the call below is this module's top-level code: ``presets.<module>``, no caller class.
"""

import imgpipe

SEED_IMAGE = imgpipe.Image(64, 64)
SHARED = imgpipe.SHARED_TRANSFORMER
THUMBNAIL_SEED = SHARED.apply_transform(SEED_IMAGE, "warmup")  # CALL:import_time
