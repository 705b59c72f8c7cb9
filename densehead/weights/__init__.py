"""Model files: where they come from (an assets folder, the cache, a verified download),
reading PyTorch checkpoints without torch, compiling the regressor to a .tflite graph (float or
int8) and the int8 calibration it needs.

May import: core.
"""
