"""Pictures of faces: 2D overlays (landmarks, dense points, pose cube) and the C++ renderer's
wrapper (lit mesh, depth, PNCC).

May import: core, engine.
"""
