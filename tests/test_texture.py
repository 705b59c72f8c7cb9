"""Textured mesh export (.obj + .mtl + .png) on real photos: the files parse, the UVs are sane and
the unwrapped texture looks like the face it came from, on the seen and on the hidden side."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import aflw_items, image_path, shared_pipeline
from readers import read_obj

from densehead.io import export, texture

EYES = list(range(36, 48))
MOUTH = list(range(48, 68))
SIZE = texture.TEXTURE_SIZE


# --- fixtures: real faces, exported once per module ---------------------------------------------

def _first_face(path: Path):
    image = cv2.imread(str(path))
    faces = shared_pipeline()(image, dense=True).faces
    assert faces, f"no face found in {path.name}"
    return image, faces[0]


@pytest.fixture(scope="module")
def frontal(samples):
    return _first_face(samples / "photos" / "JianzhuGuo.jpg")


@pytest.fixture(scope="module")
def turned_item():
    """The AFLW2000-3D sample whose |yaw| is nearest 60 deg with modest pitch and roll."""
    items = [it for it in aflw_items() if it["pose_in_range_99"]
             and abs(it["pose_deg"]["pitch"]) < 20 and abs(it["pose_deg"]["roll"]) < 20]
    return min(items, key=lambda it: abs(abs(it["pose_deg"]["yaw"]) - 60))


@pytest.fixture(scope="module")
def turned(turned_item):
    return _first_face(image_path(turned_item))


@pytest.fixture(scope="module")
def written(frontal, tmp_path_factory, output_dir):
    image, face = frontal
    out = tmp_path_factory.mktemp("textured")
    paths = export.write_textured_obj(out / "face.obj", face, image, shared_pipeline().face_model)
    (output_dir / "texture_JianzhuGuo.png").write_bytes(paths[2].read_bytes())
    return paths


def _save(output_dir: Path, name: str, textured: export.TexturedFace) -> None:
    cv2.imwrite(str(output_dir / f"texture_{name}.png"), textured.texture.image)


# --- reading the texture back the way a viewer does -------------------------------------------

def _texel_xy(uv: np.ndarray, size: int) -> np.ndarray:
    """OBJ (u, v), v up, -> texture image x, y (pixel centres at integers)."""
    return np.stack([uv[:, 0] * size - 0.5, (1.0 - uv[:, 1]) * size - 0.5], axis=1)


def _bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(K, 3) float colours of `image` at (K, 2) float positions."""
    m = xy.astype(np.float32).reshape(1, -1, 2)
    out = cv2.remap(image, m[..., 0], m[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1, 3).astype(np.float64)


def _patch_vertices(model, landmark: int, radius: float) -> np.ndarray:
    """Mesh vertices within `radius` (model units, ~um) of a landmark on the mean shape."""
    mean = model.mean.reshape(-1, 3)
    centre = mean[model.keypoint_vertex_indices[landmark]]
    return np.flatnonzero(np.linalg.norm(mean - centre, axis=1) < radius)


def _patch_errors(tex_image: np.ndarray, uv: np.ndarray, face, photo: np.ndarray, model,
                  landmarks: list[int], radius: float = 6000.0) -> np.ndarray:
    """Per landmark: mean |texture colour at the UVs of the vertices around it - photo colour at
    those vertices' image positions| (grey levels). Small when the texture shows the photo
    there; large when it is flipped, black or sampled elsewhere."""
    errors = []
    for k in landmarks:
        idx = _patch_vertices(model, k, radius)
        from_texture = _bilinear(tex_image, _texel_xy(uv[idx], tex_image.shape[0]))
        from_photo = _bilinear(photo, face.vertices[idx, :2])
        errors.append(np.abs(from_texture - from_photo).mean())
    return np.asarray(errors)


# --- a second OBJ parser, independent of densehead.io.export ---------------------------------------

def _parse_obj_minimal(path: Path) -> dict:
    out: dict = {"v": [], "vt": [], "f": [], "mtllib": [], "usemtl": []}
    for raw in path.read_text().splitlines():
        tokens = raw.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        key, rest = tokens[0], tokens[1:]
        if key == "v":
            out["v"].append(tuple(map(float, rest)))
        elif key == "vt":
            out["vt"].append(tuple(map(float, rest)))
        elif key == "f":
            out["f"].append([tuple(int(i) for i in corner.split("/")) for corner in rest])
        elif key in ("mtllib", "usemtl"):
            out[key].append(" ".join(rest))
    return out


def _parse_mtl_minimal(path: Path) -> dict[str, dict[str, str]]:
    materials: dict[str, dict[str, str]] = {}
    current = None
    for raw in path.read_text().splitlines():
        tokens = raw.split(maxsplit=1)
        if len(tokens) < 2 or tokens[0].startswith("#"):
            continue
        if tokens[0] == "newmtl":
            current = materials.setdefault(tokens[1].strip(), {})
        elif current is not None:
            current[tokens[0]] = tokens[1].strip()
    return materials


# --- the files ---------------------------------------------------------------------------------

def test_textured_obj_reads_back_with_the_project_reader(written, frontal):
    obj, mtl, png = written
    assert [p.name for p in written] == ["face.obj", "face.mtl", "face_texture.png"]
    _, face = frontal
    mesh = read_obj(obj)
    model = shared_pipeline().face_model
    assert mesh.vertices.shape == (38365, 3)
    assert np.array_equal(mesh.triangles, export.upright_triangles(model.triangles))
    assert np.allclose(mesh.vertices, export.upright(face.vertices), atol=1e-3)
    assert mesh.uv is not None and mesh.uv.shape == (38365, 2)
    assert np.allclose(mesh.uv, texture.load_uv(), atol=1e-6)
    assert export.obj_texture_path(obj) == png
    image = cv2.imread(str(png))
    assert image is not None and image.shape[0] >= 512 and image.shape[1] >= 512


def test_textured_obj_parses_with_an_independent_parser(written):
    obj, mtl, png = written
    parsed = _parse_obj_minimal(obj)
    assert len(parsed["v"]) == 38365 and len(parsed["vt"]) == 38365
    assert len(parsed["f"]) == 76073
    assert all(len(v) == 3 for v in parsed["v"]) and all(len(t) == 2 for t in parsed["vt"])
    faces = np.array(parsed["f"])  # (M, 3 corners, 2: v, vt)
    assert faces.shape == (76073, 3, 2)
    assert faces[..., 0].min() == 1 and faces[..., 0].max() == 38365
    assert faces[..., 1].min() >= 1 and faces[..., 1].max() <= 38365
    # each corner's vt is the UV of that corner's vertex: the same vertex always gets the same vt
    vt_of_vertex = {}
    for v, t in faces.reshape(-1, 2).tolist():
        assert vt_of_vertex.setdefault(v, t) == t
    assert len(vt_of_vertex) == 38365
    # the material chain names the files that were written next to the .obj
    assert parsed["mtllib"] == [mtl.name] and (obj.parent / parsed["mtllib"][0]).is_file()
    materials = _parse_mtl_minimal(mtl)
    assert len(parsed["usemtl"]) == 1 and parsed["usemtl"][0] in materials
    texture_name = materials[parsed["usemtl"][0]]["map_Kd"]
    assert texture_name == png.name
    assert cv2.imread(str(obj.parent / texture_name)) is not None


def test_every_vertex_has_a_uv_inside_the_unit_square(written):
    uv = np.array(_parse_obj_minimal(written[0])["vt"])
    assert uv.shape == (38365, 2)
    assert uv.min() >= 0.0 and uv.max() <= 1.0
    # a real layout, not all vertices piled in one place: the face spans the square
    assert np.ptp(uv[:, 0]) > 0.9 and np.ptp(uv[:, 1]) > 0.7
    assert len(np.unique(np.round(uv * 4096).astype(int), axis=0)) > 0.9 * 38365


def test_uv_layout_is_mirror_symmetric_as_the_mirror_fill_assumes():
    """Mirroring the mean face (x -> -x) and matching nearest vertices lands on the vertex whose
    UV is the texel mirrored about u = 0.5: the fill takes a hidden texel's colour from there."""
    from scipy.spatial import cKDTree

    mean = shared_pipeline().face_model.mean.reshape(-1, 3).astype(np.float64)
    mirrored = mean * np.array([-1.0, 1.0, 1.0])
    _, partner = cKDTree(mean).query(mirrored)
    uv = texture.load_uv().astype(np.float64)
    off = np.abs(uv[partner] - np.stack([1.0 - uv[:, 0], uv[:, 1]], axis=1)) * SIZE  # texels
    assert np.median(off) < 0.5 and np.percentile(off, 95) < 3.0


# --- what the texture shows --------------------------------------------------------------------

def test_texture_shows_the_photo_around_the_eyes_and_mouth(frontal):
    image, face = frontal
    model = shared_pipeline().face_model
    textured = export.textured_face(face, image, model)
    tex, uv = textured.texture.image, textured.mesh.uv
    errors = _patch_errors(tex, uv, face, image, model, EYES + MOUTH)
    # controls: the same comparison on textures that are wrong in the ways a bug would make them
    flipped_lr = _patch_errors(tex[:, ::-1].copy(), uv, face, image, model, EYES + MOUTH)
    flipped_ud = _patch_errors(tex[::-1].copy(), uv, face, image, model, EYES + MOUTH)
    black = _patch_errors(np.zeros_like(tex), uv, face, image, model, EYES + MOUTH)
    shifted = _patch_errors(np.roll(tex, 12, axis=0), uv, face, image, model, EYES + MOUTH)
    print(f"median patch error {np.median(errors):.1f}; controls: left-right "
          f"{np.median(flipped_lr):.1f}, upside-down {np.median(flipped_ud):.1f}, black "
          f"{np.median(black):.1f}, 12 texels off {np.median(shifted):.1f}")
    assert np.median(errors) < 8.0 and errors.max() < 20.0
    for control in (flipped_lr, flipped_ud, black, shifted):
        assert np.median(control) > 2.0 * np.median(errors)


def test_each_of_three_faces_gets_its_own_texture(samples, output_dir):
    image = cv2.imread(str(samples / "photos" / "emma.jpg"))
    model = shared_pipeline().face_model
    faces = shared_pipeline()(image, dense=True).faces
    assert len(faces) == 3
    textured = [export.textured_face(f, image, model, stem=f"face_{i}")
                for i, f in enumerate(faces)]
    for i, t in enumerate(textured):
        _save(output_dir, f"emma_{i}", t)
    assert [t.names[0] for t in textured] == ["face_0.obj", "face_1.obj", "face_2.obj"]
    for i, face in enumerate(faces):
        own = np.median(_patch_errors(textured[i].texture.image, textured[i].mesh.uv, face,
                                      image, model, MOUTH))
        others = [np.median(_patch_errors(textured[j].texture.image, textured[j].mesh.uv, face,
                                          image, model, MOUTH)) for j in range(3) if j != i]
        assert own < 12.0 and own < 0.7 * min(others), (i, own, others)


def _face_region(uv: np.ndarray, model, size: int) -> np.ndarray:
    """(size, size) bool: the face inside the jaw line and brows, in texture pixels (from jaw
    landmark 2 to 14: the ends of the jaw line reach the ears and the hair beside them)."""
    outline = list(range(2, 15)) + list(range(26, 16, -1))
    xy = _texel_xy(uv[model.keypoint_vertex_indices[outline]], size)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.rint(xy).astype(np.int32)], 1)
    return mask.astype(bool)


def _largest_dark_blob(image: np.ndarray, region: np.ndarray, level: int = 25) -> float:
    """Area of the largest connected dark (every channel below `level`) patch inside `region`,
    as a fraction of the region."""
    dark = ((image.max(axis=2) < level) & region).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=8)
    largest = stats[1:, cv2.CC_STAT_AREA].max() if count > 1 else 0
    return float(largest) / float(region.sum())


def test_turned_face_has_no_black_region_on_either_side(turned, turned_item, output_dir):
    image, face = turned
    assert abs(abs(turned_item["pose_deg"]["yaw"]) - 60) < 10 and abs(face.yaw) > 45
    model = shared_pipeline().face_model
    textured = export.textured_face(face, image, model)
    _save(output_dir, "turned_60", textured)
    tex = textured.texture
    region = _face_region(textured.mesh.uv, model, SIZE)
    half = np.zeros_like(region)
    half[:, SIZE // 2:] = True
    # which half of the UV square faces the camera: the one whose texels were mostly seen
    right_seen = (tex.seen & region & half).sum() > (tex.seen & region & ~half).sum()
    visible = region & (half if right_seen else ~half)
    hidden = region & ~visible
    assert (tex.seen & visible).sum() > 0.9 * visible.sum()
    assert (tex.seen & hidden).sum() < 0.5 * hidden.sum()  # really turned: most of it unseen
    for side in (visible, hidden):
        assert _largest_dark_blob(tex.image, side) < 0.01
    # the hidden side is filled with face colours, and mostly from the mirrored seen side
    grey = cv2.cvtColor(tex.image, cv2.COLOR_BGR2GRAY).astype(np.float64)
    assert grey[hidden].mean() > 0.7 * grey[visible].mean()
    mirror = grey[:, ::-1]
    assert np.corrcoef(grey[hidden], mirror[hidden])[0, 1] > 0.8
    # control: the same texture with its unseen texels left black fails the black check
    naive = tex.image.copy()
    naive[~tex.seen] = 0
    assert _largest_dark_blob(naive, hidden) > 0.2


def test_texels_hidden_behind_the_nose_come_from_the_mirrored_side(turned):
    """On the turned face, the far cheek beside the nose faces the camera but the nose covers
    it: its texels must show the mirrored near cheek, not the nose in front of it."""
    from densehead.render.renderer import depth_map

    image, face = turned
    model = shared_pipeline().face_model
    textured = export.textured_face(face, image, model)
    verts, tri = face.vertices, model.triangles
    normals = np.cross(verts[tri[:, 1]] - verts[tri[:, 0]], verts[tri[:, 2]] - verts[tri[:, 0]])
    vertex_normals = np.zeros(verts.shape, dtype=np.float64)
    for corner in range(3):
        np.add.at(vertex_normals, tri[:, corner], normals)
    if vertex_normals[model.keypoint_vertex_indices[30], 2] < 0:  # the nose tip faces the camera
        vertex_normals *= -1
    facing = vertex_normals[:, 2] / np.linalg.norm(vertex_normals, axis=1) > 0.3
    h, w = image.shape[:2]
    zbuf = depth_map(h, w, verts, tri)
    col = np.clip(np.rint(verts[:, 0]).astype(int), 0, w - 1)
    row = np.clip(np.rint(verts[:, 1]).astype(int), 0, h - 1)
    behind = facing & (zbuf[row, col] > verts[:, 2] + 0.05 * np.ptp(verts[:, 0]))
    assert behind.sum() > 100
    uv = textured.mesh.uv[behind]
    tex = textured.texture.image
    colour = _bilinear(tex, _texel_xy(uv, SIZE))
    mirrored = _bilinear(tex, _texel_xy(np.stack([1.0 - uv[:, 0], uv[:, 1]], axis=1), SIZE))
    in_front = _bilinear(image, verts[behind, :2])
    assert np.abs(colour - mirrored).mean() < 0.25 * np.abs(colour - in_front).mean()


def test_photo_is_sampled_bilinearly(frontal):
    """A 1024 texture of a 181 px face magnifies the photo about 5x: nearest-pixel sampling
    would repeat each photo pixel in blocks, bilinear sampling gives gradients."""
    image, face = frontal
    big = export.textured_face(face, image, shared_pipeline().face_model, size=1024).texture
    inner = cv2.erode(big.seen.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    pairs = inner[:, 1:] & inner[:, :-1]
    same = np.all(big.image[:, 1:] == big.image[:, :-1], axis=2) & pairs
    assert same.sum() < 0.4 * pairs.sum()  # nearest sampling: 0.6 here; bilinear: 0.25


def test_a_mirrored_photo_gives_the_same_texture(frontal):
    """The photo flipped left-right with the mesh mirrored to match shows the same skin at the
    same vertices, so the texture must not change: whether a triangle faces the camera is read
    from the projection's handedness, not assumed."""
    image, face = frontal
    model = shared_pipeline().face_model
    atlas = texture.atlas_for(model)
    mirrored = face.vertices.copy()
    mirrored[:, 0] = image.shape[1] - 1 - mirrored[:, 0]
    original = texture.unwrap(image, face.vertices, atlas)
    flipped = texture.unwrap(np.ascontiguousarray(image[:, ::-1]), mirrored, atlas)
    inner = original.seen & flipped.seen
    assert inner.sum() > 0.8 * original.seen.sum()
    diff = np.abs(original.image.astype(float) - flipped.image.astype(float))[inner]
    assert diff.mean() < 2.0


def test_texture_is_at_least_512_and_larger_on_request(frontal):
    image, face = frontal
    model = shared_pipeline().face_model
    big = export.textured_face(face, image, model, size=1024).texture
    assert big.image.shape == (1024, 1024, 3)
    small = export.textured_face(face, image, model).texture
    assert small.image.shape == (512, 512, 3)
    # the same face at both sizes: the larger one downsampled matches the smaller one
    down = cv2.resize(big.image, (512, 512), interpolation=cv2.INTER_AREA).astype(float)
    inner = cv2.erode(small.chart.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert np.abs(down - small.image.astype(float))[inner].mean() < 6.0


def test_zip_holds_the_three_files(frontal, tmp_path):
    import zipfile

    image, face = frontal
    textured = export.textured_face(face, image, shared_pipeline().face_model, stem="face_0")
    path = tmp_path / "face_0.zip"
    path.write_bytes(textured.zip_bytes())
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["face_0.mtl", "face_0.obj", "face_0_texture.png"]
        zf.extractall(tmp_path / "unzipped")
    mesh = read_obj(tmp_path / "unzipped" / "face_0.obj")
    assert mesh.uv is not None and mesh.n_vertices == 38365
    assert export.obj_texture_path(tmp_path / "unzipped" / "face_0.obj").is_file()


# --- bad input ---------------------------------------------------------------------------------

def test_a_mesh_whose_texture_cannot_be_written_leaves_no_files(frontal, tmp_path):
    image, face = frontal
    (tmp_path / "face_texture.png").mkdir()   # the texture's name is taken by a folder
    with pytest.raises(OSError):
        export.write_textured_obj(tmp_path / "face.obj", face, image, shared_pipeline().face_model)
    # no .obj naming a texture that is not there, and no temporary files left
    assert [p.name for p in tmp_path.iterdir()] == ["face_texture.png"]


def test_bad_input_gets_a_clear_message(frontal, tmp_path):
    image, face = frontal
    model = shared_pipeline().face_model
    sparse_only = shared_pipeline()(image).faces[0]
    with pytest.raises(ValueError, match="dense=True"):
        export.write_textured_obj(tmp_path / "face.obj", sparse_only, image, model)
    with pytest.raises(ValueError, match=r"\.obj"):
        export.write_textured_obj(tmp_path / "face.ply", face, image, model)
    elsewhere = np.zeros((40, 40, 3), np.uint8)  # the face's pixels are not in this image
    with pytest.raises(ValueError, match="no part of this face is visible"):
        export.textured_face(face, elsewhere, model)
    for size in (0, 32, 8193, 512.0):   # the command's --size bounds hold here too
        with pytest.raises(ValueError, match="from 64 to 8192"):
            export.textured_face(face, image, model, size=size)
    # a name whose texture file would be longer than a file name may be: refused, none written
    with pytest.raises(ValueError, match="choose a shorter name"):
        export.write_textured_obj(tmp_path / ("b" * 245 + ".obj"), face, image, model)
    assert list(tmp_path.iterdir()) == []  # nothing half-written
