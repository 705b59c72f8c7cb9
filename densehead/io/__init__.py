"""Files in and out: images, videos, the per-frame table (CSV, Parquet), mesh and result
exports, the texture unwrap of a textured export.

May import: core, weights, engine, render.
"""
