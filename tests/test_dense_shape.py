"""The dense shape from the half-precision basis (csrc/face_basis.cpp) against numpy's float32
product, on the real BFM and the coefficients of real faces."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import shared_pipeline

from densehead.engine.dense_shape import (
    BLOCK,
    FloatBasis,
    HalfBasis,
    dense_basis,
    dense_shape,
    has_fast_path,
)
from densehead.engine.face_model import checked_bfm
from densehead.io.image import read_image
from densehead.weights.assets import resolve
from densehead.weights.checkpoint import load_pickle


@pytest.fixture(scope="module")
def bfm() -> tuple[np.ndarray, np.ndarray]:
    path = resolve("bfm_noneck_v3.pkl", download=False)
    mean, basis, _ = checked_bfm(load_pickle(path), path)
    return mean, basis


@pytest.fixture(scope="module")
def photo_coeffs(samples) -> list[np.ndarray]:
    pipe = shared_pipeline()
    faces = [f for name in ("emma.jpg", "JianzhuGuo.jpg", "trump_hillary.jpg")
             for f in pipe(read_image(samples / "photos" / name)).faces]
    assert len(faces) == 6
    return [f.params[12:].astype(np.float32) for f in faces]


def test_half_basis_gives_the_float_shape_within_its_rounding(bfm, photo_coeffs):
    """Each basis value rounded to half precision moves by at most 2^-11 of itself, so a
    vertex coordinate moves by at most 2^-11 * sum_k |c_k b_k| (plus float32 summation, far
    smaller): the bound is the arithmetic, not one CPU's result. A user sees it as a hundredth
    of a pixel at most (test below)."""
    mean, basis = bfm
    half, full = HalfBasis(mean, basis), FloatBasis(mean, basis)
    extent = np.ptp(mean.reshape(-1, 3), axis=0).max()
    for coeffs in photo_coeffs:
        bound = 2.0 ** -11 * (np.abs(basis) @ np.abs(coeffs).astype(np.float64)) + 1e-6 * extent
        error = np.abs(half(coeffs).astype(np.float64) - full(coeffs))
        assert (error <= bound).all(), f"worst {error.max():.3g} over a bound of {bound.max():.3g}"
        assert error.max() < 1e-4 * extent


def test_the_vector_and_the_plain_loop_agree(bfm, photo_coeffs):
    """The same products: the vector loop sums even and odd coefficients apart and rounds each
    FMA once, where the plain loop rounds twice, which moves a float32 sum of 50 terms by a few
    units in its last place."""
    mean, basis = bfm
    half = HalfBasis(mean, basis)
    extent = np.ptp(mean.reshape(-1, 3), axis=0).max()
    for coeffs in photo_coeffs:
        assert np.abs(half(coeffs) - half(coeffs, portable=True)).max() < 1e-6 * extent


@pytest.mark.parametrize("portable", [False, True])
def test_every_half_value_converts_exactly(portable):
    bits = np.arange(1 << 16, dtype=np.uint16)
    finite = bits[np.isfinite(bits.view(np.float16))]
    finite = finite[: finite.size // BLOCK * BLOCK]
    blocks = np.ascontiguousarray(finite.reshape(-1, 1, BLOCK))
    out = dense_shape(np.zeros(finite.size, np.float32), blocks, np.ones(1, np.float32), portable)
    assert np.array_equal(out, finite.view(np.float16).astype(np.float32))


def test_a_padded_tail_block_is_left_out():
    """3N is not a multiple of the block: the padding never reaches the caller."""
    rng = np.random.default_rng(1)
    mean, basis = rng.normal(size=45).astype(np.float32), rng.normal(size=(45, 5))
    coeffs = rng.normal(size=5).astype(np.float32)
    out = HalfBasis(mean, basis)(coeffs)
    assert out.shape == (45,)
    assert np.allclose(out, mean + basis.astype(np.float16).astype(np.float32) @ coeffs,
                       rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", [HalfBasis, FloatBasis])
def test_a_subset_of_rows_gives_those_outputs_of_the_whole_product(bfm, photo_coeffs, kind):
    """The point overlay's basis (every sixth vertex) holds the same basis values as the whole
    one. The half-precision kernel computes each output alone, so it comes out bit for bit;
    numpy's product may group a sum otherwise for another shape, hence float32 rounding there."""
    mean, basis = bfm
    whole = kind(mean, basis)
    rows = (np.arange(0, len(mean) // 3, 6)[:, None] * 3 + np.arange(3)).ravel()
    part = whole.rows(rows)
    for coeffs in photo_coeffs:
        if kind is HalfBasis:
            assert np.array_equal(part(coeffs), whole(coeffs)[rows])
        else:
            np.testing.assert_allclose(part(coeffs), whole(coeffs)[rows], rtol=1e-5, atol=1e-3)


def test_the_fast_product_is_chosen_where_the_cpu_has_it(bfm):
    chosen = dense_basis(*bfm)
    assert isinstance(chosen, HalfBasis if has_fast_path() else FloatBasis)


def test_dense_vertices_on_a_photo_move_by_a_hundredth_of_a_pixel_at_most(bfm, samples):
    """emma.jpg's faces are the largest of the samples (up to 0.007 px measured); the bound
    leaves room for the official basis, whose values differ from the stand-in's."""
    pipe = shared_pipeline()
    frame = read_image(samples / "photos" / "emma.jpg")
    mean, basis = bfm
    for face in pipe(frame, dense=True).faces:
        chosen = pipe.face_model.dense(face.params[12:])  # the product this CPU runs
        reference = FloatBasis(mean, basis)(face.params[12:]).reshape(-1, 3)
        camera_scale = np.linalg.norm(face.camera[:2, :3], axis=1).max()
        roi_scale = (face.roi[2] - face.roi[0]) / 120.0
        assert np.abs(chosen - reference).max() * camera_scale * roi_scale < 0.02


@pytest.mark.parametrize("mean_len, coeffs_len, message", [
    (2 * BLOCK - 1, 5, f"mean must be float32 of shape ({2 * BLOCK},)"),
    (2 * BLOCK, 4, "coeffs must be float32 of shape (5,)"),
])
def test_mismatched_inputs_are_named(mean_len, coeffs_len, message):
    blocks = np.zeros((2, 5, BLOCK), np.uint16)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        dense_shape(np.zeros(mean_len, np.float32), blocks, np.zeros(coeffs_len, np.float32))
