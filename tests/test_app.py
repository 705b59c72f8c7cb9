"""The pages under Streamlit's AppTest: they render, widgets change state, bad input is a message."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from paths import ROOT
from streamlit.testing.v1 import AppTest

TIMEOUT = 180  # the first run compiles the regressor (then it is cached on disk)


def app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    if page:
        at.switch_page(f"pages/{page}")
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def shown(at: AppTest) -> int:
    """The vertex count the viewer says it shows (and the Mesh3d it draws has)."""
    import re

    match = re.search(r"Showing ([\d,]+) of 38,365 vertices", texts(at.caption))
    assert match, texts(at.caption)
    return int(match.group(1).replace(",", ""))


def test_home_lists_model_files_and_renderer():
    at = app().run()
    assert not at.exception
    assert "real-time 3D dense face alignment" in at.title[0].value
    table = at.dataframe[0].value
    assert "mb05_120x120.pth" in set(table["file"])
    kinds = dict(zip(table["file"], table["kind"]))
    assert kinds["bfm_noneck_v3.pkl"].startswith("stand-in")  # the shared copy is a stand-in
    assert "stand-in" in texts(at.warning)
    # the test set-up builds the C++ renderer, so the home page must say it is loaded
    assert "C++ mesh renderer: built and loaded" in texts(at.success)


def test_home_explains_missing_files(tmp_path, monkeypatch):
    monkeypatch.setenv("DENSEHEAD_ASSETS", str(tmp_path))
    monkeypatch.setenv("DENSEHEAD_HOME", str(tmp_path / "home"))
    at = app().run()
    assert not at.exception
    message = texts(at.error)
    assert "Missing model files" in message and "densehead fetch" in message


def test_viewer_photo_gives_mesh_and_widgets_change_it(samples):
    at = app("2_3D_viewer.py").run()
    assert not at.exception
    photo = (samples / "photos" / "trump_hillary.jpg").read_bytes()
    at.file_uploader(key="photo").upload("trump_hillary.jpg", photo, "image/jpeg").run()
    assert not at.exception and not at.error
    assert at.selectbox(key="face").options == ["face 0", "face 1"]
    assert 11_400 <= shown(at) <= 12_600
    at.selectbox(key="detail").select("light (~4,000 vertices)").run()
    assert 3_800 <= shown(at) <= 4_200
    at.selectbox(key="detail").select("full (38,365 vertices)").run()
    assert shown(at) == 38_365
    at.selectbox(key="face").select(1).run()
    assert not at.exception
    labels = [m.label for m in at.metric]
    assert labels[:3] == ["Yaw", "Pitch", "Roll"]
    # .obj, .ply, .json and the textured mesh's zip; the texture is shown with its share seen
    assert len(at.get("download_button")) == 4
    share = re.search(r"(\d+)% are seen in the photo, (\d+)% take some or all of their colour "
                      r"from the mirrored side and (\d+)% are filled", texts(at.caption))
    assert share and all(0 <= int(v) <= 100 for v in share.groups()), texts(at.caption)
    assert len(at.get("image")) >= 1


def test_viewer_shows_nothing_of_a_photo_its_uploader_no_longer_holds(samples):
    """Switching to the camera and back leaves the uploader empty in the browser: the page then
    shows no faces of the earlier photo."""
    at = app("2_3D_viewer.py").run()
    photo = (samples / "photos" / "JianzhuGuo.jpg").read_bytes()
    at.file_uploader(key="photo").upload("JianzhuGuo.jpg", photo, "image/jpeg").run()
    assert shown(at) > 0
    at.radio[0].set_value("Take a snapshot with the camera").run()
    at.radio[0].set_value("Upload a photo").run()
    assert not at.exception
    assert "Upload a photo with one or more faces" in texts(at.info)
    assert not re.search(r"Showing [\d,]+ of 38,365 vertices", texts(at.caption))


def test_viewer_shows_a_phone_photo_upright(samples):
    """A portrait photo as phones store it: turned, with an EXIF orientation saying how to turn
    it back. The viewer fits the face the way the person sees it (a small roll, not 90°)."""
    import io

    from PIL import Image

    picture = Image.open(samples / "photos" / "JianzhuGuo.jpg").transpose(Image.Transpose.ROTATE_90)
    exif = picture.getexif()
    exif[0x0112] = 6   # "turn it 90° clockwise to view": undoes the turn above
    stored = io.BytesIO()
    picture.save(stored, "JPEG", quality=95, exif=exif.tobytes())
    at = app("2_3D_viewer.py").run()
    at.file_uploader(key="photo").upload("portrait.jpg", stored.getvalue(), "image/jpeg").run()
    assert not at.exception and not at.error
    roll = {m.label: float(m.value.rstrip("°")) for m in at.metric}["Roll"]
    assert abs(roll) < 20, roll   # -6° for this photo upright; a sideways fit rolls by ~90°


def test_viewer_rejects_non_image_and_faceless_photo(samples):
    at = app("2_3D_viewer.py").run()
    at.file_uploader(key="photo").upload("notes.jpg", b"not an image at all", "image/jpeg").run()
    assert not at.exception
    assert "is not an image that can be read" in texts(at.error)
    import cv2
    import numpy as np

    blank = cv2.imencode(".png", np.full((300, 400, 3), 200, np.uint8))[1].tobytes()
    at.file_uploader(key="photo").upload("wall.png", blank, "image/png").run()
    assert not at.exception
    assert "No face was found" in texts(at.warning)


def video_folder() -> tuple[str, Path]:
    """(session id, the video page's temporary folder): AppTest runs every test in one session."""
    from densehead.dashboard.sessions import server_resources

    (found,) = [(s["id"], Path(s["video_files"]["path"]))
                for s in server_resources().status()["sessions"] if "video_files" in s]
    return found


def test_video_page_bad_upload_is_a_message(caplog):
    caplog.set_level(logging.INFO, logger="densehead")
    at = app("3_Video_analysis.py").run()
    assert not at.exception
    at.file_uploader(key="video").upload("clip.mp4", b"\x00garbage" * 100, "video/mp4").run()
    at.button[0].click().run()
    assert not at.exception
    # the message names the person's file (as written: Markdown escapes taken out), and the
    # server log has one line, no traceback
    shown = re.sub(r"\\(.)", r"\1", texts(at.error))
    assert "“clip.mp4” is not a video that can be read" in shown
    refusals = [r for r in caplog.records if "clip.mp4" in r.getMessage()]
    assert refusals and not any(r.exc_info for r in refusals)
    # nothing of the failed analysis stays on the server's disk
    _, folder = video_folder()
    assert folder.is_dir() and not any(folder.iterdir())


def test_video_page_analyses_a_real_video(samples):
    at = app("3_Video_analysis.py").run()
    at.number_input(key="video_limit").set_value(25)
    at.file_uploader(key="video").upload(
        "orlando_bloom.avi", (samples / "videos" / "orlando_bloom.avi").read_bytes(), "video/x-msvideo").run()
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert "25 frames" in texts(at.caption)
    summary = at.dataframe[0].value
    assert summary["frames"].iloc[0] >= 20 and abs(summary["yaw_mean"].iloc[0]) < 90
    assert len(at.get("download_button")) == 3
    # on disk: only the playable overlay video, in the session's folder (not the upload);
    # the server deletes the folder when the session ends
    from densehead.dashboard.sessions import server_resources

    sid, folder = video_folder()
    assert sorted(p.name for p in folder.iterdir()) == ["overlay.mp4"]
    server_resources().close(sid, "video_files")
    assert not folder.exists()


def test_live_page_renders_settings():
    at = app("1_Live_webcam.py").run()
    assert not at.exception
    assert list(at.selectbox(key="live_mode").options) == ["sparse", "dense", "pose", "mesh", "depth", "pncc"]
    at.selectbox(key="live_mode").select("pose").run()
    at.slider(key="live_threshold").set_value(0.5).run()
    assert not at.exception
    from densehead.dashboard.sessions import server_resources

    state = server_resources().find(at.session_state["live_session_id"], "live")
    assert state.settings.mode == "pose" and state.settings.pipeline.options.score_threshold == 0.5


@pytest.mark.parametrize("value, expected", [
    ('["stun:stun.example.org:3478"]', [{"urls": "stun:stun.example.org:3478"}]),
    ('[{"urls": ["turn:t.example.org"], "username": "u", "credential": "c"}]',
     [{"urls": ["turn:t.example.org"], "username": "u", "credential": "c"}]),
    ("", []),
])
def test_ice_servers_from_environment(monkeypatch, value, expected):
    from densehead.dashboard.webrtc import ice_servers

    monkeypatch.setenv("DENSEHEAD_ICE_SERVERS", value)
    assert ice_servers() == expected


@pytest.mark.parametrize("name, saved", [
    ("talk.MOV", "talk.MOV"),                  # the person's name, as messages should say it
    ("../../etc/clip.mp4", "clip.mp4"),        # never outside its folder
    ("..", "upload"), ("", "upload"),
    ("a" * 300 + ".mp4", "upload.mp4"),        # longer than a file name may be
])
def test_an_upload_is_saved_under_its_own_name_and_goes(tmp_path, name, saved):
    from densehead.dashboard.uploads import saved_upload

    (tmp_path / "overlay.mp4").write_bytes(b"result")   # a result kept beside it is untouched
    with saved_upload(b"video bytes", name, tmp_path) as path:
        assert path.name == saved and path.read_bytes() == b"video bytes"
        assert path.parent.parent == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["overlay.mp4"]
