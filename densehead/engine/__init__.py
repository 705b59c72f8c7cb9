"""A frame's path: the detector, the box -> crop rule and the crop, the TFLite runtime, the face
model (sparse and dense reconstruction), pose, the pipeline that runs them for one frame, the
mirror fallback when nothing is found, and the video tracker with its smoothing.

May import: core, weights.
"""
