"""3D viewer: a photo in, a coloured Plotly mesh per face out, with pose and coefficients."""
from __future__ import annotations

import numpy as np
import streamlit as st

from densehead.core.errors import ImageError
from densehead.core.frames import fit_within
from densehead.dashboard.cached_pipeline import load_pipeline, shared_pipeline
from densehead.dashboard.device import on_phone
from densehead.dashboard.drawing import detections_picture
from densehead.dashboard.figures import (
    FULL_VERTICES,
    MESH_HEIGHT,
    MESH_NARROWEST,
    bar_figure,
    decimate,
    mesh_figure,
    pose_axes,
)
from densehead.dashboard.navigation import open_page
from densehead.dashboard.side_by_side import side_by_side
from densehead.dashboard.text import plain
from densehead.dashboard.uploads import download_stem, upload_types
from densehead.io import export
from densehead.io.image import FORMATS, decode_image
from densehead.io.video import IMAGE_SUFFIXES

open_page(__file__)

MAX_SIDE = 4096  # bigger photos are downscaled before detection (faces stay far above 120 px)
DETAIL = {"balanced (~12,000 vertices)": 12_000,
          f"full ({FULL_VERTICES:,} vertices)": FULL_VERTICES,
          "light (~4,000 vertices)": 4_000}
KEPT = "viewer_photo"   # (bytes, name) of the photo shown: the uploader forgets it on other pages
REVISION = "revision"   # Reset view counts up: a new plot, in the view it starts with
WIRE_VERTICES = 3_000  # the wireframe is drawn on a coarser mesh: 38k vertices of lines is too much
# On a phone the plot takes a finger's drag to turn the face: a shorter one leaves page to scroll by
PHONE_MESH_HEIGHT = 420


@st.cache_data(max_entries=4, show_spinner="Finding faces…")
def analyse(data: bytes, name: str = "the photo") -> tuple[np.ndarray | None, list, str]:
    """(image, faces with dense vertices, note) for encoded image bytes; when the bytes are not
    a usable image: (None, [], why)."""
    try:
        image = decode_image(data, name)
    except ImageError as error:
        return None, [], str(error)
    h, w = image.shape[:2]
    image, scale = fit_within(image, MAX_SIDE)
    note = (f"The photo ({w}x{h}) was downscaled to {image.shape[1]}x{image.shape[0]}."
            if scale < 1 else "")
    faces = shared_pipeline()(image, dense=True).faces
    # numbered left to right, as a photo is read (the pipeline orders them by its own measure)
    return image, sorted(faces, key=lambda face: face.box[0]), note


@st.cache_data(max_entries=4, show_spinner="Unwrapping the face's texture…")
def textured(data: bytes, name: str, index: int, stem: str) -> export.TexturedFace:
    """The face's textured mesh: .obj with UVs, .mtl and the unwrapped texture."""
    image, faces, _ = analyse(data, name)
    return export.textured_face(faces[index], image, shared_pipeline().face_model, stem=stem)


@st.cache_data(max_entries=8)
def meshes(data: bytes, name: str, index: int, target: int) -> tuple[export.Mesh, export.Mesh, export.Mesh]:
    """(full mesh, display mesh, wireframe mesh) of one face."""
    image, faces, _ = analyse(data, name)
    full = export.face_mesh(faces[index], shared_pipeline().face_model.triangles, image)
    return full, decimate(full, target), decimate(full, WIRE_VERTICES)


def forget_the_photo() -> None:
    # A widget the page stops showing keeps its value under its key, but comes back empty in the
    # browser: without this, the last photo's faces stood under an empty uploader.
    for key in ("photo", "snapshot", KEPT):
        st.session_state.pop(key, None)


if load_pipeline() is None:
    st.stop()

source = st.radio("Photo", ["Upload a photo", "Take a snapshot with the camera"], horizontal=True,
                  on_change=forget_the_photo)
if source.startswith("Upload"):
    upload = st.file_uploader(f"Photo ({FORMATS})", type=upload_types(IMAGE_SUFFIXES),
                              key="photo", on_change=lambda: st.session_state.pop(KEPT, None))
else:
    upload = st.camera_input("Snapshot", key="snapshot",
                             help="If nothing appears, the browser blocked the camera: allow it "
                                  "in the site settings, or upload a photo instead. Browsers "
                                  "give pages the camera only over https:// or on this machine "
                                  "(localhost).")
if upload is not None:
    st.session_state[KEPT] = (upload.getvalue(), upload.name)
elif KEPT in st.session_state:
    st.info(f"The photo “{plain(st.session_state[KEPT][1])}”, opened earlier. Upload another "
            "to see its faces.")
else:
    st.info("Upload a photo with one or more faces (or take a snapshot) to see them in 3D.")
    st.stop()

data, upload_name = st.session_state[KEPT]
name = f"“{upload_name}”"
image, faces, note = analyse(data, name)
if image is None:
    st.error(f"{plain(note)}. Please upload a photo ({FORMATS}).")   # the note names the file
    st.stop()
if note:
    st.info(note)
if not faces:
    st.warning("No face was found in this photo. Try a photo where the face is larger, frontal "
               "and well lit.")
    st.image(image, channels="BGR", width=480)
    st.stop()

if len(faces) > 1:
    index = st.selectbox("Face", range(len(faces)), format_func=lambda i: f"face {i}", key="face")
else:
    index = 0
face = faces[index]

# the 3D plot under the photo where beside it, it would be too narrow to show a turned face whole
top_left, top_right = side_by_side("viewer_top", (2, 3), MESH_NARROWEST * MESH_HEIGHT)
with top_left:
    st.image(detections_picture(image, faces, selected=index), channels="BGR")
    with st.container(horizontal=True):   # the readouts wrap where a narrow column cut them
        for label, angle in (("Yaw", face.yaw), ("Pitch", face.pitch), ("Roll", face.roll)):
            st.metric(label, f"{angle:+.1f}°", width="content")
    st.caption(f"{len(faces)} face(s) found; detector score {face.score:.2f}.")

with top_right:
    # two rows, so that no label is cut at 1280 px
    first, second = st.columns([3, 1], vertical_alignment="bottom")
    detail = first.selectbox("Detail", list(DETAIL), key="detail")
    if second.button("Reset view"):
        st.session_state[REVISION] = st.session_state.get(REVISION, 0) + 1
    # Each toggle draws a new plot, seen from the front again: Streamlit mounts a new chart for
    # a changed figure, and Plotly's 3D scene saves a turned view into the layout object it was
    # first drawn with, which Streamlit replaces right after that first draw (for the width,
    # and for its theme, even at a fixed width), so that even the legend's clicks, made in the
    # browser alone, lose the view.
    toggles = st.columns(3)
    wire = toggles[0].toggle("Wireframe", key="wire")
    marks = toggles[1].toggle("68 landmarks", key="marks")
    axes = toggles[2].toggle("Pose axes", value=True, key="axes")
    full, shown, wireframe = meshes(data, name, index, DETAIL[detail])
    phone = on_phone()
    fig = mesh_figure(shown, landmarks=export.upright(face.landmarks) if marks else None,
                      axes=pose_axes(face) if axes else None,
                      wireframe=wireframe if wire else None,
                      revision=st.session_state.get(REVISION, 0),
                      height=PHONE_MESH_HEIGHT if phone else MESH_HEIGHT)
    st.plotly_chart(fig, key=f"mesh-{st.session_state.get(REVISION, 0)}",
                    config={"displaylogo": False})
    how = "Drag a finger across the face to turn it" if phone else \
        "Drag to turn the face, scroll to zoom"
    st.caption(f"{how}. Showing {shown.n_vertices:,} of {full.n_vertices:,} vertices "
               f"({len(shown.triangles):,} triangles; vertex clustering for display — the "
               "downloads are always the full mesh).")

left, right = st.columns(2)
# no tool bar on the bar charts: on a touch screen it stays over their titles
left.plotly_chart(bar_figure(face.expression_coeffs, "Expression coefficients (10)", "e"),
                  key="exp_bars", config={"displayModeBar": False})
right.plotly_chart(bar_figure(face.shape_coeffs, "Shape coefficients (40)", "s"),
                   key="shape_bars", config={"displayModeBar": False})

stem = download_stem(upload_name, "photo") + f"_face{index}"   # also the zip's file names
with st.expander("Texture (unwrapped into the face model's UV square)", expanded=True):
    tex = textured(data, name, index, stem)
    share = tex.texture.fractions()
    st.image(tex.texture.image, channels="BGR", width=384)
    st.caption(f"Of the face's texels, {share['seen']:.0%} are seen in the photo, "
               f"{share['mirrored']:.0%} take some or all of their colour from the mirrored side "
               f"and {share['filled']:.0%} are filled from their neighbours (a texel can count "
               "in more than one).")
    st.download_button("Download textured mesh (.zip: .obj + .mtl + .png)",
                       data=lambda: tex.zip_bytes(), file_name=f"{stem}_textured.zip",
                       mime="application/zip", on_click="ignore")
with st.container(horizontal=True):   # each label whole (in columns: "Download .obj (…")
    st.download_button("Download .obj (vertex colours)", data=lambda: export.obj_bytes(full),
                       file_name=f"{stem}.obj", mime="text/plain", on_click="ignore")
    st.download_button("Download .ply", data=lambda: export.ply_bytes(full),
                       file_name=f"{stem}.ply", mime="application/octet-stream",
                       on_click="ignore")
    st.download_button("Download .json",
                       data=export.faces_json([face], with_vertices=False, source=upload_name,
                                              face_index=index),
                       file_name=f"{stem}.json", mime="application/json", on_click="ignore")
