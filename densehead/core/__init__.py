"""The facts every stage agrees on: the result records (Face, FrameResult), the options, the
regressor's parameter layout and the 68-point facts, user-facing errors, the frame form, boxes,
atomic file writes.

May import: nothing of densehead.
"""
