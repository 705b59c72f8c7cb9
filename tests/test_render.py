"""The C++ renderer against a slow numpy reference on small meshes, and on the real 38,365-vertex
mesh (pictures left in test-output/ for a person to look at)."""
from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from densehead.engine.face_model import ncc_code
from densehead.render import renderer as render
from densehead.tools.render_bench import load_mean_mesh, posed_face

# ---------------------------------------------------------------- numpy reference rasterizer


def reference_raster(shape: tuple[int, int], faces: list[np.ndarray], tri: np.ndarray,
                     colors: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Obviously-correct z-buffer: pixel centres at integer coordinates, a pixel is covered when
    its three barycentric weights are >= 0, the strictly nearest (largest z) surface wins, the
    first one drawn on ties. Returns z (-inf where empty), colour (0..255) and an 'edge' mask of
    pixels within 1e-4 of some triangle's edge, where float rounding may decide either way."""
    h, w = shape
    zbuf = np.full((h, w), -np.inf)
    cbuf = np.zeros((h, w, 3))
    edge = np.zeros((h, w), bool)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    for verts, col in zip(faces, colors):
        v = verts.astype(np.float64)
        for i0, i1, i2 in tri:
            a, b, c = v[i0], v[i1], v[i2]
            area = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
            if not np.isfinite(area) or abs(area) <= 1e-10:
                continue
            w0 = ((c[0] - b[0]) * (ys - b[1]) - (c[1] - b[1]) * (xs - b[0])) / area
            w1 = ((a[0] - c[0]) * (ys - c[1]) - (a[1] - c[1]) * (xs - c[0])) / area
            w2 = ((b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0])) / area
            inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
            edge |= np.abs(np.minimum(np.minimum(w0, w1), w2)) < 1e-4
            z = w0 * a[2] + w1 * b[2] + w2 * c[2]
            win = inside & (z > zbuf)
            zbuf[win] = z[win]
            for k in range(3):
                ck = w0 * col[i0, k] + w1 * col[i1, k] + w2 * col[i2, k]
                cbuf[..., k][win] = ck[win]
    return zbuf, cbuf, edge


def reference_blend(frame: np.ndarray, zbuf: np.ndarray, cbuf: np.ndarray,
                    alpha: float) -> np.ndarray:
    out = frame.astype(np.float64)
    covered = np.isfinite(zbuf)
    out[covered] += alpha * (np.clip(cbuf[covered], 0, 255) - out[covered])
    return np.floor(out + 0.5).astype(np.uint8)


def reference_normals(v: np.ndarray, tri: np.ndarray) -> np.ndarray:
    v = v.astype(np.float64)
    n_tri = np.cross(v[tri[:, 1]] - v[tri[:, 0]], v[tri[:, 2]] - v[tri[:, 0]])
    acc = np.zeros_like(v)
    for k in range(3):
        np.add.at(acc, tri[:, k], n_tri)
    sign = -1.0 if n_tri[:, 2].sum() < 0 else 1.0
    return sign * acc / np.linalg.norm(acc, axis=1, keepdims=True)


def reference_light(normals: np.ndarray, light: render.Light, color) -> np.ndarray:
    l = np.asarray(light.direction, float)
    l /= np.linalg.norm(l)
    h = l + [0, 0, 1]
    h /= np.linalg.norm(h)
    ndl = np.clip(normals @ l, 0, None)
    spec = np.clip(normals @ h, 0, 1) ** light.shininess
    lc = np.asarray(light.color, float)
    rgb = (np.asarray(color) * lc)[None] * (light.ambient + light.diffuse * ndl)[:, None]
    rgb += light.specular * lc[None] * spec[:, None]
    return 255.0 * np.clip(rgb, 0, 1)


# ---------------------------------------------------------------- small meshes


def random_scene(seed: int, n_faces: int = 2, h: int = 24, w: int = 32):
    """A few random triangles per 'face' (mixed windings, overlapping, some off-frame)."""
    rng = np.random.default_rng(seed)
    n = 12
    tri = np.ascontiguousarray(rng.permutation(n * 3).reshape(-1, 3) % n, dtype=np.int32)
    tri = tri[(tri[:, 0] != tri[:, 1]) & (tri[:, 1] != tri[:, 2]) & (tri[:, 0] != tri[:, 2])]
    faces = []
    for _ in range(n_faces):
        v = np.column_stack([rng.uniform(-6, w + 6, n), rng.uniform(-6, h + 6, n),
                             rng.uniform(-50, 50, n)])
        faces.append(np.ascontiguousarray(v, dtype=np.float32))
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return frame, faces, np.ascontiguousarray(tri)


@pytest.mark.parametrize("seed", range(6))
def test_zbuffer_winner_and_colours_match_reference(seed: int) -> None:
    frame, faces, tri = random_scene(seed)
    pncc = np.random.default_rng(100 + seed).uniform(0, 1, (faces[0].shape[0], 3)).astype(np.float32)
    # PNCC paints x, y, z as R, G, B: as per-vertex BGR colours that is pncc[:, ::-1].
    zref, cref, edge = reference_raster(frame.shape[:2], faces, tri, [255.0 * pncc[:, ::-1]] * 2)

    zmap = render.depth_map(frame.shape[0], frame.shape[1], faces, tri)
    covered = np.isfinite(zmap)
    sure = ~edge
    assert covered.any()
    np.testing.assert_array_equal(covered[sure], np.isfinite(zref)[sure])
    both = sure & covered
    np.testing.assert_allclose(zmap[both], zref[both], atol=1e-3)

    out = render.render_pncc(frame.copy(), faces, tri, pncc, alpha=0.7)
    expected = reference_blend(frame, zref, cref, 0.7)
    diff = np.abs(out.astype(int) - expected.astype(int))
    assert diff[sure].max() <= 1  # within 1/255
    assert np.array_equal(out[~covered & sure], frame[~covered & sure])  # untouched elsewhere


def tiny_triangle_scene(seed: int, spacing: float):
    """Two jittered grids of sub-pixel / pixel-sized triangles (the real-mesh case), bumpy in z,
    overlapping each other, partly off-frame, with a few big triangles mixed into the order."""
    rng = np.random.default_rng(seed)
    h, w = 18, 22
    ny, nx = int((h + 6) / spacing), int((w + 6) / spacing)
    gy, gx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    quads = [(r * nx + c, r * nx + c + 1, (r + 1) * nx + c, (r + 1) * nx + c + 1)
             for r in range(ny - 1) for c in range(nx - 1)]
    tri = [t for a, b, c, d in quads for t in ((a, b, c), (b, d, c))]
    tri += [tuple(rng.choice(ny * nx, 3, replace=False)) for _ in range(6)]  # big ones
    tri = np.array(tri, dtype=np.int32)
    tri = np.ascontiguousarray(tri[rng.permutation(len(tri))])
    tri[::2] = tri[::2, ::-1]  # mixed windings
    faces = []
    for k in range(2):
        x = -3 + spacing * gx + rng.uniform(-0.3, 0.3, gx.shape) * spacing + 1.5 * k
        y = -3 + spacing * gy + rng.uniform(-0.3, 0.3, gy.shape) * spacing + 0.7 * k
        z = 5 * np.sin(gx / 3 + k) * np.cos(gy / 4) + 2 * k
        faces.append(np.column_stack([x.ravel(), y.ravel(), z.ravel()]).astype(np.float32))
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return frame, faces, tri


@pytest.mark.parametrize("spacing", [0.45, 0.8, 1.3, 2.0, 2.6])
def test_tiny_triangles_match_reference(spacing: float) -> None:
    """The batched path for triangles whose box holds at most 2x2 pixel centres (nearly all of
    them on a real face; 3x3 when the triangles are bigger than a pixel on average, as for the
    two largest spacings) agrees with the reference: winner, z and colour."""
    frame, faces, tri = tiny_triangle_scene(int(spacing * 100), spacing)
    pncc = np.random.default_rng(7).uniform(0, 1, (faces[0].shape[0], 3)).astype(np.float32)
    zref, cref, edge = reference_raster(frame.shape[:2], faces, tri, [255.0 * pncc[:, ::-1]] * 2)
    zmap = render.depth_map(frame.shape[0], frame.shape[1], faces, tri)
    covered = np.isfinite(zmap)
    sure = ~edge
    assert sure.mean() > 0.5 and covered.mean() > 0.9
    np.testing.assert_array_equal(covered[sure], np.isfinite(zref)[sure])
    both = sure & covered
    np.testing.assert_allclose(zmap[both], zref[both], atol=1e-3)
    out = render.render_pncc(frame.copy(), faces, tri, pncc, alpha=0.6)
    expected = reference_blend(frame, zref, cref, 0.6)
    assert np.abs(out.astype(int) - expected.astype(int))[sure].max() <= 1


def test_depth_mode_matches_reference() -> None:
    frame, faces, tri = random_scene(7, n_faces=1)
    v = faces[0]
    used = np.unique(tri)
    # Per-face normalisation runs over all valid vertices of the face.
    z = v[:, 2].astype(np.float64)
    grey = 255.0 * (z - z.min()) / (z.max() - z.min())
    zref, cref, edge = reference_raster(frame.shape[:2], faces, tri, [np.repeat(grey[:, None], 3, 1)])
    out = render.render_depth(frame.copy(), faces, tri, alpha=1.0)
    expected = reference_blend(frame, zref, cref, 1.0)
    assert used.size > 0
    assert np.abs(out.astype(int) - expected.astype(int))[~edge].max() <= 1


@pytest.mark.parametrize("shininess", [10.0, 7.5, 0.0])
def test_mesh_lighting_matches_reference(shininess: float) -> None:
    # A small bumpy grid facing the camera, drawn with both windings: same picture. Whole
    # shininess goes through repeated squaring, fractional through the table.
    gy, gx = np.mgrid[0:7, 0:9].astype(np.float64)
    z = 4 * np.sin(gx / 2) * np.cos(gy / 3)
    v = np.column_stack([3 + 3.1 * gx.ravel(), 2 + 3.3 * gy.ravel(), z.ravel()]).astype(np.float32)
    quads = [(r * 9 + c, r * 9 + c + 1, (r + 1) * 9 + c, (r + 1) * 9 + c + 1)
             for r in range(6) for c in range(8)]
    tri = np.array([t for a, b, c, d in quads for t in ((a, b, c), (b, d, c))], dtype=np.int32)
    light = render.Light(ambient=0.3, diffuse=0.6, specular=0.3, shininess=shininess,
                         direction=(0.5, -0.3, 1.0), color=(1.0, 0.9, 0.8))
    color = (0.7, 0.8, 0.9)
    frame = np.full((28, 32, 3), 40, np.uint8)
    for winding in (tri, np.ascontiguousarray(tri[:, ::-1])):
        shade = reference_light(reference_normals(v, winding), light, color)
        zref, cref, edge = reference_raster(frame.shape[:2], [v], winding, [shade])
        out = render.render_mesh(frame.copy(), [v], winding, light=light, color=color, alpha=0.9)
        expected = reference_blend(frame, zref, cref, 0.9)
        assert np.abs(out.astype(int) - expected.astype(int))[~edge].max() <= 1


# ---------------------------------------------------------------- the real mesh


@pytest.fixture(scope="module")
def mean_mesh():
    return load_mean_mesh()


@pytest.fixture(scope="module")
def pncc(mean_mesh) -> np.ndarray:
    return ncc_code(mean_mesh.shape)


def face_mask(verts: np.ndarray, shape: tuple[int, int], grow: int) -> np.ndarray:
    """Convex outline of the projected vertices, grown by `grow` pixels."""
    mask = np.zeros(shape, np.uint8)
    hull = cv2.convexHull(np.round(verts[:, :2]).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    if grow > 0:
        mask = cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    elif grow < 0:
        mask = cv2.erode(mask, np.ones((-2 * grow + 1, -2 * grow + 1), np.uint8))
    return mask.astype(bool)


def save(output_dir: Path, name: str, image: np.ndarray) -> None:
    assert cv2.imwrite(str(output_dir / f"render_{name}.png"), image)


@pytest.mark.parametrize("mode", ["mesh", "depth", "pncc"])
def test_real_mesh_paints_inside_the_face_only(mode, mean_mesh, pncc, output_dir) -> None:
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[::8] = 160  # stripes, so that any change is visible
    verts = posed_face(mean_mesh.shape, (320, 240), 200, yaw=25, pitch=-10, roll=5)
    out = frame.copy()
    if mode == "mesh":
        render.render_mesh(out, [verts], mean_mesh.triangles, alpha=1.0)
    elif mode == "depth":
        render.render_depth(out, [verts], mean_mesh.triangles)
    else:
        render.render_pncc(out, [verts], mean_mesh.triangles, pncc)
    save(output_dir, f"{mode}_mean_face", out)
    changed = np.any(out != frame, axis=2)
    assert not changed[~face_mask(verts, frame.shape[:2], grow=2)].any()
    inner = face_mask(verts, frame.shape[:2], grow=-6)
    assert changed[inner].mean() > 0.97


def test_real_mesh_is_lit_from_the_front(mean_mesh) -> None:
    """Normals must face the camera whatever the winding: with the light straight ahead, the
    middle of a frontal face is near full brightness, not at the ambient level."""
    verts = posed_face(mean_mesh.shape, (320, 240), 200)
    light = render.Light(ambient=0.2, diffuse=0.8, specular=0.0, direction=(0, 0, 1))
    back = render.Light(ambient=0.2, diffuse=0.8, specular=0.0, direction=(0, 0, -1))
    for tri in (mean_mesh.triangles, np.ascontiguousarray(mean_mesh.triangles[:, ::-1])):
        lit, dark = (render.render_mesh(np.zeros((480, 640, 3), np.uint8), [verts], tri,
                                        light=l, color=(1, 1, 1), alpha=1.0)
                     for l in (light, back))
        face = lit[..., 0] > 0
        assert np.median(lit[face]) > 0.75 * 255  # mostly facing the light
        forehead = lit[150:170, 300:340]
        assert forehead.min() > 0.9 * 255
        assert np.median(dark[face]) <= 0.2 * 255 + 1  # ambient only


def test_nearer_face_wins(mean_mesh, pncc, output_dir) -> None:
    far = posed_face(mean_mesh.shape, (290, 240), 200, yaw=-15)
    near = posed_face(mean_mesh.shape, (360, 250), 180, yaw=20)
    near[:, 2] += 1000.0  # well in front of the other face
    frame = np.zeros((480, 640, 3), np.uint8)
    overlap = face_mask(far, frame.shape[:2], -6) & face_mask(near, frame.shape[:2], -6)
    assert overlap.sum() > 2000
    alone = [render.depth_map(480, 640, [v], mean_mesh.triangles) for v in (far, near)]
    for order in ([far, near], [near, far]):  # drawing order must not matter
        zmap = render.depth_map(480, 640, order, mean_mesh.triangles)
        # The shared z-buffer is the nearer of the two faces at every pixel.
        np.testing.assert_array_equal(zmap, np.fmax(alone[0], alone[1]))
    assert np.isfinite(alone[1][overlap]).mean() > 0.97
    out = render.render_pncc(frame, [far, near], mean_mesh.triangles, pncc)
    save(output_dir, "pncc_two_faces", out)
    out = render.render_mesh(np.full((480, 640, 3), 60, np.uint8), [far, near],
                             mean_mesh.triangles)
    save(output_dir, "mesh_two_faces", out)
    depth = render.render_depth(np.zeros((480, 640, 3), np.uint8), [far, near],
                                mean_mesh.triangles, black_background=True)
    save(output_dir, "depth_two_faces", depth)


def test_depth_is_bright_near(mean_mesh) -> None:
    verts = posed_face(mean_mesh.shape, (320, 240), 200)
    out = render.render_depth(np.zeros((480, 640, 3), np.uint8), [verts], mean_mesh.triangles)
    nose = verts[np.argmax(verts[:, 2])]
    x, y = int(round(nose[0])), int(round(nose[1]))
    assert out[y, x, 0] > 240  # nose tip is the nearest point
    assert np.all(out[..., 0] == out[..., 1]) and np.all(out[..., 1] == out[..., 2])


def test_pncc_channels_follow_model_axes(mean_mesh, pncc) -> None:
    verts = posed_face(mean_mesh.shape, (320, 240), 200)
    out = render.render_pncc(np.zeros((480, 640, 3), np.uint8), [verts], mean_mesh.triangles,
                             pncc).astype(int)
    left, right = out[240, 240], out[240, 400]  # image left = model -x
    assert right[2] > left[2] + 100  # R follows model x
    top, bottom = out[170, 320], out[320, 320]
    assert top[1] > bottom[1] + 60  # G follows model y (up)


# ---------------------------------------------------------------- robustness


def test_partly_outside_huge_nan_and_degenerate_do_not_crash(mean_mesh, pncc, output_dir) -> None:
    tri = mean_mesh.triangles
    corner = posed_face(mean_mesh.shape, (10, 15), 300, yaw=30)  # mostly off-frame
    broken = posed_face(mean_mesh.shape, (300, 200), 150)
    broken[::97] = np.nan
    broken[5::211] = [1e30, -1e30, 1e30]
    broken[7::307] = np.inf
    flat = posed_face(mean_mesh.shape, (450, 300), 150)
    flat[:, 0] = 450.0  # every triangle degenerate
    huge = posed_face(mean_mesh.shape, (320, 240), 1e7)  # enormous triangles
    # Frames of odd sizes, including 1x1, with a guard band that must stay untouched.
    for h, w in [(480, 640), (1, 1), (7, 3), (720, 1280)]:
        big = np.full((h + 2, w, 3), 77, np.uint8)
        frame = big[1:-1]
        assert frame.flags.c_contiguous
        render.render_mesh(frame, [corner, broken, flat, huge], tri)
        render.render_depth(frame, [corner, broken, flat, huge], tri)
        render.render_pncc(frame, [corner, broken, flat, huge], tri, pncc)
        assert np.all(big[0] == 77) and np.all(big[-1] == 77)
        if (h, w) == (480, 640):
            save(output_dir, "robustness", frame)
    # Only NaN: nothing drawn.
    frame = np.zeros((40, 40, 3), np.uint8)
    render.render_mesh(frame, [np.full((38365, 3), np.nan, np.float32)], tri)
    assert not frame.any()
    render.render_mesh(frame, [], tri)
    assert not frame.any()


@pytest.mark.parametrize("first_bad", [0, 5, 38364])
def test_invalid_vertices_drop_exactly_their_triangles(mean_mesh, first_bad: int) -> None:
    """A NaN / huge / inf vertex anywhere (first, inside a batch, last) removes just the
    triangles that use it: same z-buffer as the mesh without those triangles."""
    tri = mean_mesh.triangles
    v = posed_face(mean_mesh.shape, (320, 240), 200, yaw=15)
    bad = np.array(sorted({first_bad, 38364, *range(first_bad + 3, 38365, 1013)}))
    broken = v.copy()
    broken[bad[0::3]] = np.nan
    broken[bad[1::3]] = 2e6
    broken[bad[2::3]] = -np.inf
    keep = ~np.isin(tri, bad).any(axis=1)
    expected = render.depth_map(480, 640, [v], np.ascontiguousarray(tri[keep]))
    got = render.depth_map(480, 640, [broken], tri)
    np.testing.assert_array_equal(got, expected)
    assert np.isfinite(got).sum() > 20000


def test_bad_arrays_give_clear_errors(mean_mesh, pncc) -> None:
    tri = mean_mesh.triangles
    v = posed_face(mean_mesh.shape, (320, 240), 200)
    frame = np.zeros((480, 640, 3), np.uint8)
    with pytest.raises(TypeError, match="frame must be uint8"):
        render.render_mesh(frame.astype(np.float32), [v], tri)
    with pytest.raises(ValueError, match=r"frame must be uint8 of shape \(H, W, 3\)"):
        render.render_mesh(np.zeros((480, 640, 4), np.uint8), [v], tri)
    with pytest.raises(ValueError, match="C-contiguous"):
        render.render_mesh(np.zeros((480, 1280, 3), np.uint8)[:, ::2], [v], tri)
    readonly = frame.copy()
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        render.render_mesh(readonly, [v], tri)
    with pytest.raises(TypeError, match=r"vertices_list\[0\] must be float32"):
        render.render_mesh(frame, [v.astype(np.float64)], tri)
    with pytest.raises(ValueError, match=r"vertices_list\[1\] must be C-contiguous"):
        render.render_mesh(frame, [v, np.asfortranarray(v)], tri)
    with pytest.raises(ValueError, match="all faces share the triangles"):
        render.render_mesh(frame, [v, v[:100]], tri)
    with pytest.raises(TypeError, match="triangles must be int32"):
        render.render_mesh(frame, [v], tri.astype(np.int64))
    with pytest.raises(ValueError, match=r"triangles must be int32 of shape \(M, 3\)"):
        render.render_mesh(frame, [v], np.ascontiguousarray(tri.T))
    with pytest.raises(ValueError, match="outside"):
        render.render_mesh(frame, [v[:1000]], tri)
    with pytest.raises(TypeError, match="pncc_colors must be float32"):
        render.render_pncc(frame, [v], tri, pncc.astype(np.float64))
    with pytest.raises(ValueError, match="pncc_colors has"):
        render.render_pncc(frame, [v], tri, pncc[:10])
    with pytest.raises(ValueError, match="alpha"):
        render.render_mesh(frame, [v], tri, alpha=1.5)
    with pytest.raises(TypeError, match="list"):
        render.render_mesh(frame, 42, tri)
    assert not frame.any()  # nothing drawn by a failed call


def test_single_array_is_one_face(mean_mesh) -> None:
    v = posed_face(mean_mesh.shape, (320, 240), 200)
    a = render.render_mesh(np.zeros((480, 640, 3), np.uint8), v, mean_mesh.triangles)
    b = render.render_mesh(np.zeros((480, 640, 3), np.uint8), [v], mean_mesh.triangles)
    assert np.array_equal(a, b) and a.any()


def test_two_threads_render_at_once(mean_mesh) -> None:
    """Scratch buffers are per thread and the GIL is released: concurrent renders of different
    scenes give exactly the sequential pictures."""
    scenes = [posed_face(mean_mesh.shape, (300 + 40 * k, 240), 150 + 30 * k, yaw=10 * k)
              for k in range(2)]
    expected = [render.render_mesh(np.zeros((480, 640, 3), np.uint8), [v], mean_mesh.triangles)
                for v in scenes]
    errors: list[str] = []

    def work(k: int) -> None:
        for _ in range(30):
            out = render.render_mesh(np.zeros((480, 640, 3), np.uint8), [scenes[k]],
                                     mean_mesh.triangles)
            if not np.array_equal(out, expected[k]):
                errors.append(f"thread {k} differs")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# ---------------------------------------------------------------- real faces (needs the pipeline)


def test_real_faces_from_photos_and_video(samples, output_dir, monkeypatch, assets_dir) -> None:
    monkeypatch.setenv("DENSEHEAD_ASSETS", str(assets_dir))
    import densehead

    pipe = densehead.Pipeline()
    tri = pipe.face_model.triangles
    pncc = ncc_code(load_mean_mesh().shape)
    images = {p.stem: cv2.imread(str(p)) for p in sorted((samples / "photos").glob("*.jpg"))}
    cap = cv2.VideoCapture(str(samples / "videos" / "obama.mp4"))
    ok, frame = cap.read()
    cap.release()
    if ok:
        images["obama_frame0"] = frame
    for name, image in images.items():
        faces = pipe(image, dense=True).faces
        assert faces, name
        verts = [np.ascontiguousarray(f.vertices, dtype=np.float32) for f in faces]
        for mode in ("mesh", "depth", "pncc"):
            out = image.copy()
            if mode == "mesh":
                render.render_mesh(out, verts, tri)
            elif mode == "depth":
                render.render_depth(out, verts, tri)
            else:
                render.render_pncc(out, verts, tri, pncc)
            save(output_dir, f"{mode}_{name}", out)
            changed = np.any(out != image, axis=2)
            outline = np.zeros(changed.shape, bool)
            for v in verts:
                outline |= face_mask(v, changed.shape, grow=2)
            assert not changed[~outline].any()
            assert changed[outline].mean() > 0.5
