"""The live page as a server for several people: separate browser contexts (separate Streamlit
sessions) streaming real videos at once, each with its own series and settings; what a closed
tab leaves on the server; recording; STOP/START; the video page's files.

What the server holds per session is read from the status file it writes (see
densehead.dashboard.sessions); everything else is what a person sees or downloads."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import av
import numpy as np
import pytest
from e2e_setup import CAMERA_SECONDS
from paths import SAMPLES
from test_browser import CUT_LABELS_JS, stage_text

from densehead.io.table import COL
from densehead.io.video import iter_frames
from densehead.tools.browser import (
    choose,
    click,
    frames_shown,
    go_to_page,
    live_sessions,
    metric,
    new_page,
    page_session_id,
    read_status,
    set_number,
    start_stream,
    text_retrying,
    via_home,
    wait_fps,
    wait_until,
    webrtc_frame,
)


def open_live(browser, app_url: str, status_file: Path, output_dir: Path, known: set[str],
              max_faces: int | None = None):
    """A person opens the live page (optionally sets Max faces) and presses START; returns the
    page and the server's id of its session."""
    page = new_page(browser)
    go_to_page(page, app_url, "/Live_webcam")
    frame = webrtc_frame(page)
    sid = page_session_id(page, status_file, known)
    if max_faces is not None:
        set_number(page, "Max faces", max_faces,
                   lambda: live_sessions(read_status(status_file))[sid]["max_faces"] == max_faces)
    start_stream(page, frame)
    return page, sid


def download(page, button: str, tries: int = 3) -> bytes:
    """Click a download button and return what the browser saved (tried again if the panel
    redraws under the click)."""
    seen: list[str] = []
    watch = lambda r: seen.append(f"{r.status} {r.url}") if "/media/" in r.url else None  # noqa: E731
    page.on("response", watch)
    try:
        for attempt in range(tries):
            try:
                with page.expect_download(timeout=60_000) as info:
                    click(page.get_by_role("button", name=button), 30_000)
                return Path(info.value.path()).read_bytes()
            except Exception as exc:
                print(f"download {button!r} attempt {attempt}: {exc}; media responses {seen}")
                if attempt == tries - 1:
                    raise
                page.wait_for_timeout(1000)
    finally:
        page.remove_listener("response", watch)
    raise AssertionError("unreachable")


def series_csv(page) -> bytes:
    """Export the series as it is now and download it, as a person would: one who sees no
    download half a minute after clicking Export clicks it again. In 3 of about 15 full runs,
    with three or four streams on the server, one click's download never showed (cause not
    found: in every run logged, the server made the export within milliseconds of the click's
    rerun); the retry is printed. Once per page: an export's download stays on the page until
    the next export replaces it."""
    wanted = page.get_by_role("button", name="Download series (CSV)")
    assert wanted.count() == 0
    for attempt in range(2):
        click(page.get_by_role("button", name="Export series (CSV)"))
        try:
            wanted.wait_for(timeout=30_000)
            break
        except Exception:
            print(f"Export series (CSV), click {attempt + 1}: no download after 30 s")
            if attempt:
                raise
    return download(page, "Download series (CSV)")


def csv_table(data: bytes) -> np.ndarray:
    lines = data.decode().strip().splitlines()
    rows = [[float(v) for v in line.split(",")] for line in lines[1:]]
    return np.array(rows, dtype=float).reshape(len(rows), len(lines[0].split(",")))


def rows_per_frame(table: np.ndarray) -> np.ndarray:
    return np.unique(table[:, COL["frame"]], return_counts=True)[1]


def status_since(status_file: Path, since: float, timeout_s: float = 15) -> dict:
    """The first status the server wrote after `since` (time.time()): an older one may show
    a moment that has passed (a file not yet removed, fewer frames counted)."""
    status = wait_until(lambda: (s := read_status(status_file)).get("time", 0) > since and s,
                        timeout_s, every_s=0.25)
    assert status, f"no status written in {timeout_s} s"
    return status


def shot(page, output_dir: Path, name: str) -> None:
    try:
        page.screenshot(path=str(output_dir / name), full_page=True)
    except Exception:
        pass


def test_three_people_at_once_each_see_only_their_own(browser, obama_browser, app_url,
                                                      status_file, output_dir, server):
    """Two people in front of the orlando video (one allows 1 face, one up to 4) and one in front
    of the obama video stream at the same time. Each one's readouts and CSV hold only what their
    own camera shows with their own settings; when one closes the tab, the server releases that
    session within seconds and the others keep streaming."""
    known = set(live_sessions(read_status(status_file)))
    people = {}
    try:
        # obama allows one face: the broadcast logo in the corner of obama.mp4 is sometimes
        # detected as a second, weaker face (README, Accuracy)
        for name, b, max_faces in (("one_face", browser, 1), ("up_to_four", browser, None),
                                   ("obama", obama_browser, 1)):
            page, sid = open_live(b, app_url, status_file, output_dir, known | {s for _, s in people.values()},
                                  max_faces)
            people[name] = (page, sid)
        for page, _ in people.values():
            assert wait_fps(page, timeout_s=90) > 0
        # each camera plays its looped video through once (the orlando video's small background
        # faces show in some stretches only), and each server session processes 60 frames of
        # it, however long a slow machine takes for them
        time.sleep(CAMERA_SECONDS + 1)
        live = wait_until(lambda: (s := live_sessions(read_status(status_file))) and all(
            s[sid]["streaming"] and s[sid]["processed"] > 60 for _, sid in people.values()) and s, 180)
        for name, (page, sid) in people.items():
            shot(page, output_dir, f"e2e_multi_{name}.png")
            assert live and live[sid]["streaming"] and live[sid]["processed"] > 60, (name, live)
        tables = {name: csv_table(series_csv(page))
                  for name, (page, _) in people.items()}
        widths = {n: t[:, COL["box_x2"]] - t[:, COL["box_x1"]] for n, t in tables.items()}
        summary = {n: {"rows": len(t), "frames": len(rows_per_frame(t)),
                       "max_rows_per_frame": int(rows_per_frame(t).max()),
                       "box_width_min": float(widths[n].min()), "box_width_max": float(widths[n].max())}
                   for n, t in tables.items()}
        (output_dir / "e2e_multi_session.json").write_text(json.dumps(summary, indent=1))

        # the obama viewer: one face per frame, of obama's size; nothing of the orlando video
        assert summary["obama"]["max_rows_per_frame"] == 1, summary
        assert 55 < summary["obama"]["box_width_min"] and summary["obama"]["box_width_max"] < 95, summary
        assert int(metric(people["obama"][0], "Faces")) == 1
        # the person who allows one face never gets a second, the other one does
        assert summary["one_face"]["max_rows_per_frame"] == 1, summary
        assert summary["up_to_four"]["max_rows_per_frame"] >= 2, summary
        assert summary["up_to_four"]["box_width_min"] < 40, summary   # the small background faces
        # each CSV counts its own frames: numbers unique per track, no more than processed
        live = live_sessions(status_since(status_file, time.time()))   # after the downloads
        for name, table in tables.items():
            keys = {(int(f), int(t)) for f, t in table[:, [COL["frame"], COL["track_id"]]]}
            assert len(keys) == len(table), name
            assert summary[name]["frames"] <= live[people[name][1]]["processed"], name

        # one person records, then closes the tab while streaming
        leaving_page, leaving = people.pop("up_to_four")
        click(leaving_page.get_by_role("button", name="⏺ Record"))
        folder = wait_until(lambda: live_sessions(read_status(status_file))[leaving]["temp_dir"], 30)
        assert folder and Path(folder).is_dir()
        before = {sid: live[sid]["processed"] for _, sid in people.values()}
        leaving_page.context.close()
        gone = wait_until(lambda: leaving not in live_sessions(read_status(status_file)), 20)
        status = read_status(status_file)
        assert gone, f"the closed session is still held: {live_sessions(status).get(leaving)}"
        assert wait_until(lambda: read_status(status_file)["lingering"] == 0, 10), read_status(status_file)
        assert not Path(folder).exists(), "the closed session's recording files are still there"
        # ... and the others went on streaming all along
        went_on = lambda s: all(s[sid]["processed"] > before[sid] + 10 for _, sid in people.values())  # noqa: E731
        live = wait_until(lambda: went_on(s := live_sessions(read_status(status_file))) and s, 60)
        for name, (page, sid) in people.items():
            assert live and live[sid]["processed"] > before[sid] + 10, (name, before[sid], live)
            assert page.locator("text=Traceback").count() == 0
        assert "Traceback" not in server.log_text()
    finally:
        for page, _ in people.values():
            page.context.close()


def recorded_enough(progress: str) -> bool:
    """Whether the recording's progress caption shows at least 5 s and 30 frames."""
    seconds, frames = re.search(r"Recording: ([0-9.]+) s of [0-9]+ s, (\d+) frames", progress).groups()
    return float(seconds) >= 5.0 and int(frames) >= 30


def test_recording_gives_an_mp4_and_the_csv_of_exactly_its_frames(browser, app_url, status_file,
                                                                  output_dir, tmp_path):
    page, sid = open_live(browser, app_url, status_file, output_dir,
                          set(live_sessions(read_status(status_file))))
    try:
        assert wait_fps(page, timeout_s=90) > 0
        click(page.get_by_role("button", name="⏺ Record"))
        # record five seconds and at least 30 frames, however many a second this machine makes
        progress = page.locator("text=/Recording: [0-9.]+ s of 60 s/").first
        progress.wait_for(timeout=30_000)
        assert wait_until(lambda: recorded_enough(text_retrying(page, progress)), 120), \
            text_retrying(page, progress)
        click(page.get_by_role("button", name="⏹ Stop recording"))
        page.get_by_role("button", name="Download recording (.mp4)").wait_for(timeout=60_000)
        caption = text_retrying(page, page.locator("text=/Recorded [0-9]+ frames/").first)
        shot(page, output_dir, "e2e_live_recording.png")
        page.set_viewport_size({"width": 1280, "height": 1100})   # a laptop
        # in columns both buttons read "Download…"
        assert wait_until(lambda: page.evaluate(CUT_LABELS_JS) == [], 10), \
            page.evaluate(CUT_LABELS_JS)
        mp4 = tmp_path / "recording.mp4"
        mp4.write_bytes(download(page, "Download recording (.mp4)"))
        table = csv_table(download(page, "Download recording series (.csv)"))
    finally:
        page.context.close()

    with av.open(str(mp4)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        times = [float(f.pts * f.time_base) for f in container.decode(stream)]
    n = len(times)
    recorded, seconds = re.search(r"Recorded (\d+) frames, ([0-9.]+) s", caption).groups()
    assert n == int(recorded) and n >= 25, (n, caption)
    assert times[-1] > 3.0 and abs(times[-1] - float(seconds)) < 0.1, (times[-1], caption)
    frames = table[:, COL["frame"]].astype(int)
    assert frames.min() >= 0 and frames.max() < n        # the CSV's frames are the MP4's frames
    assert len(set(frames)) >= 0.9 * n                   # and nearly every frame shows a face
    by_frame = {int(f): t for f, t in table[:, [COL["frame"], COL["time_s"]]]}
    assert all(abs(by_frame[k] - times[k]) < 2e-3 for k in by_frame)   # at the MP4's timestamps

    # the browser plays it (H.264 in an MP4: what the download is for)
    player = new_page(browser)
    try:
        html = tmp_path / "play.html"
        html.write_text(f'<video id="v" src="{mp4.name}" muted></video>')
        player.goto(html.as_uri())
        ready = player.wait_for_function("""() => { const v = document.getElementById('v');
            return v.readyState >= 2 && v.videoWidth > 0 ? [v.duration, v.videoWidth] : null; }""",
                                         timeout=30_000).json_value()
        assert ready[0] == pytest.approx(times[-1], abs=0.5) and ready[1] > 0
    finally:
        player.context.close()


def test_a_recording_takes_the_length_set_and_ends_with_its_files(browser, app_url,
                                                                   status_file, output_dir):
    """A person sets Recording length to 5 s while streaming, records, and the recording ends by
    itself at 5 s, with a button for its files (the buttons' panel is not redrawn on its own); a
    second recording ended by the stream's STOP offers its files without asking."""
    page, sid = open_live(browser, app_url, status_file, output_dir,
                          set(live_sessions(read_status(status_file))))
    try:
        assert wait_fps(page, timeout_s=90) > 0
        slider = page.locator('[data-testid="stSlider"]', has_text="Recording length").locator(
            "input[type=range]")
        slider.press("Home")   # the slider's least value, 5 s
        assert wait_until(lambda: slider.input_value() == "5", 30), slider.input_value()
        click(page.get_by_role("button", name="⏺ Record"))
        page.locator("text=/Recording: [0-9.]+ s of 5 s/").first.wait_for(timeout=30_000)
        page.locator("text=The recording ended (reached 5 s)").wait_for(timeout=120_000)
        show = page.get_by_role("button", name="Show the recording's files")
        files = page.get_by_role("button", name="Download recording (.mp4)")
        click(show)
        # once in a full run the files did not come after the click (the button is in a panel
        # redrawn every second; not seen again in 13 runs of this test alone): a person clicks
        # again
        if not wait_until(lambda: files.count() > 0, 30) and show.count():
            click(show)
        files.wait_for(timeout=60_000)
        # the files are out: the stopped recording's ⏹ and the note give way to ⏺ Record
        assert page.get_by_role("button", name="⏹ Stop recording").count() == 0
        page.get_by_role("button", name="⏺ Record").wait_for(timeout=30_000)
        note = page.locator("text=The recording ended (reached 5 s)")
        assert wait_until(lambda: note.count() == 0, 30), "the note stayed after the files came"
        caption = text_retrying(page, page.locator("text=/Recorded [0-9]+ frames/").first)
        seconds = float(re.search(r"Recorded \d+ frames, ([0-9.]+) s", caption).group(1))
        assert 4.0 < seconds <= 5.1, caption   # frames up to 5 s, the last at most a frame short

        click(page.get_by_role("button", name="⏺ Record"))
        page.locator("text=/Recording: [0-9.]+ s of 5 s/").first.wait_for(timeout=30_000)
        stop = next(f for f in page.frames if f.locator("button", has_text="STOP").count())
        click(stop.locator("button", has_text="STOP"))
        page.get_by_role("button", name="Download recording (.mp4)").wait_for(timeout=60_000)
        asks = page.get_by_role("button", name="Show the recording's files")
        assert wait_until(lambda: asks.count() == 0, 30), "the page asks for files it shows"
        shot(page, output_dir, "e2e_live_recording_stream_ended.png")
        assert page.get_by_role("button", name="⏹ Stop recording").count() == 0
    finally:
        page.context.close()


def test_stop_then_start_is_a_new_stream_with_its_own_lag(browser, app_url, status_file, output_dir):
    page, sid = open_live(browser, app_url, status_file, output_dir,
                          set(live_sessions(read_status(status_file))))
    try:
        assert wait_fps(page, timeout_s=90) > 0
        assert wait_until(lambda: (frames_shown(page) or 0) >= 30, 90), "fewer than 30 frames"
        stop = next(f for f in page.frames if f.locator("button", has_text="STOP").count())
        click(stop.locator("button", has_text="STOP"))
        page.locator("text=the stream is stopped or paused").wait_for(timeout=30_000)
        assert wait_until(lambda: not live_sessions(read_status(status_file))[sid]["streaming"], 15)
        frames_before = live_sessions(read_status(status_file))[sid]["processed"]
        page.wait_for_timeout(5000)   # a pause: the old media-time baseline would now be 5 s off
        start_stream(page, webrtc_frame(page))
        assert wait_until(lambda: live_sessions(read_status(status_file))[sid]["streams"] == 2, 60)
        assert wait_fps(page, timeout_s=60) > 0
        # the readouts of a second or more of the new stream
        assert wait_until(lambda: (frames_shown(page) or 0) > frames_before + 25, 90), \
            (frames_shown(page), frames_before)
        lag = float(metric(page, "Queue lag ms"))
        line = stage_text(page)
        shot(page, output_dir, "e2e_live_restarted.png")
        live = live_sessions(read_status(status_file))[sid]
        assert live["streaming"] and live["processed"] > frames_before
        assert 0 <= lag < 1000, (lag, line)   # not the pause between the two streams
        # the series went on across the two streams (frames keep counting until Clear)
        assert int(line.split(" frames of")[0].split("· ")[-1]) > frames_before
    finally:
        page.context.close()


def test_leaving_the_page_while_streaming_and_coming_back(browser, app_url, status_file,
                                                          output_dir):
    """A person streaming opens Home from the sidebar, then comes back to Live webcam: the
    stream went with the page, and START starts a new one that is processed and keeps going
    (the component is reset on the way back, and only then)."""
    page, sid = open_live(browser, app_url, status_file, output_dir,
                          set(live_sessions(read_status(status_file))))
    try:
        assert wait_fps(page, timeout_s=90) > 0
        nav = page.locator('[data-testid="stSidebarNav"]')
        click(nav.get_by_text("Home", exact=True))
        page.get_by_text("Model status").wait_for(timeout=60_000)
        assert wait_until(lambda: not live_sessions(read_status(status_file))[sid]["streaming"], 60)
        processed = live_sessions(read_status(status_file))[sid]["processed"]
        click(nav.get_by_text("Live webcam", exact=True))
        start_stream(page, webrtc_frame(page))
        live = wait_until(lambda: (s := live_sessions(read_status(status_file))[sid])["streaming"]
                          and s["processed"] > processed + 10 and s, 60)
        shot(page, output_dir, "e2e_live_came_back.png")
        assert live, (processed, live_sessions(read_status(status_file))[sid])
    finally:
        page.context.close()


def analyse_on_the_video_page(page, app_url, video: Path, max_frames: int = 0) -> None:
    """A person opens the video page, sets Max frames (0: all), uploads `video` and presses
    Analyse."""
    go_to_page(page, app_url, "/Video_analysis")
    if max_frames:
        page.locator('[data-testid="stNumberInput"]', has_text="Max frames").locator(
            "input").fill(str(max_frames))
    page.locator('[data-testid="stFileUploader"] input[type=file]').set_input_files(str(video))
    click(page.get_by_role("button", name="Analyse"), 60_000)


def test_video_page_files_go_with_the_session(browser, app_url, status_file, output_dir):
    known = {s["id"] for s in read_status(status_file)["sessions"]}
    page = new_page(browser)
    try:
        analyse_on_the_video_page(page, app_url, SAMPLES / "videos" / "orlando_bloom.avi", 25)
        page.locator("text=/Done: [0-9]+ frames/").wait_for(timeout=120_000)
        status = status_since(status_file, time.time())   # one before "Done" shows the upload
        shot(page, output_dir, "e2e_video_done.png")
        mine = [s for s in status["sessions"] if s["id"] not in known and "video_files" in s]
        assert len(mine) == 1
        files = mine[0]["video_files"]
        assert files["exists"] and files["files"] == 1, files   # the overlay video only
        folder = Path(files["path"])
        # the files a person takes home: the overlay video and the per-frame JSON, 25 frames each
        video = output_dir / "e2e_video_overlay.mp4"
        video.write_bytes(download(page, "Download overlay video (.mp4)"))
        assert sum(1 for _ in iter_frames(video)) == 25
        frames = json.loads(download(page, "Download per-frame results (.json)"))["frames"]
        assert len(frames) == 25 and all(f["faces"] for f in frames[:5])
    finally:
        page.context.close()
    assert wait_until(lambda: not folder.exists(), 20), f"{folder} outlived its session"
    assert mine[0]["id"] not in {s["id"] for s in read_status(status_file)["sessions"]}


# the track names each Plotly chart of the page has in its legend
LEGEND_TRACKS_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(el =>
  [...new Set((el._fullData || []).filter(t => t.showlegend && /^track /.test(t.name))
     .map(t => t.name))])"""


# how many of the charts' Plotly tool bars are drawn (their buttons not transparent)
TOOL_BARS_SHOWN_JS = """() => [...document.querySelectorAll('.modebar-group')]
  .filter(g => getComputedStyle(g).opacity !== '0').length"""


def test_video_charts_show_the_longest_tracks_and_say_how_many_there_were(browser, app_url,
                                                                          output_dir):
    """orlando_bloom.avi has faces in the background: more tracks than a chart's legend can
    hold on a phone. The charts show the longest five and say so; the CSV has every track."""
    from densehead.dashboard.figures import DASHES

    page = new_page(browser)
    try:
        analyse_on_the_video_page(page, app_url, SAMPLES / "videos" / "orlando_bloom.avi")
        page.locator("text=/Done: [0-9]+ frames/").wait_for(timeout=180_000)
        caption = page.locator("text=/The charts show the [0-9]+ longest of the [0-9]+ tracks/")
        caption.wait_for(timeout=30_000)
        shot(page, output_dir, "e2e_video_longest_tracks.png")
        shown, total = map(int, re.search(r"the (\d+) longest of the (\d+) tracks",
                                          caption.inner_text()).groups())
        rows = csv_table(download(page, "Download series (.csv)"))
        ids, counts = np.unique(rows[:, COL["track_id"]].astype(int), return_counts=True)
        assert shown == len(DASHES) and total == len(ids) > shown, (shown, total, len(ids))
        rows_of = {f"track {i}": n for i, n in zip(ids, counts)}
        pose_legend = page.evaluate(LEGEND_TRACKS_JS)[0]
        left_out = set(rows_of) - set(pose_legend)
        assert len(pose_legend) == shown, pose_legend
        # the tracks charted are the longest: none left out has more rows than one shown
        assert min(rows_of[t] for t in pose_legend) >= max(rows_of[t] for t in left_out)
        # the charts' tool bars show only under the pointer: always shown, they covered the
        # legends' first entries
        page.mouse.move(0, 0)
        assert page.evaluate(TOOL_BARS_SHOWN_JS) == 0
    finally:
        page.context.close()


def test_a_short_video_is_said_to_be_short_naming_the_persons_file(browser, app_url):
    """obama.mp4 ends after 55 of the 158 frames its header announces: the page says so, naming
    the file as the person named it, in quotes, as its other messages do."""
    page = new_page(browser)
    try:
        analyse_on_the_video_page(page, app_url, SAMPLES / "videos" / "obama.mp4")
        note = page.locator('[data-testid="stAlert"]', has_text="ended after")
        note.wait_for(timeout=120_000)
        assert "“obama.mp4” ended after" in note.inner_text(), note.inner_text()
        # a small laptop (the sidebar leaves the page 560 px): no label of the results is cut
        page.set_viewport_size({"width": 1024, "height": 1100})
        page.get_by_role("button", name="Download per-frame results (.json)").wait_for()
        assert wait_until(lambda: page.evaluate(CUT_LABELS_JS) == [], 10), \
            page.evaluate(CUT_LABELS_JS)
        # the summary's 16 columns as wide as the charts: beside the video 2 to 5 showed
        page.set_viewport_size({"width": 1280, "height": 1100})
        summary = page.locator('[data-testid="stDataFrame"]').first
        chart = page.locator(".js-plotly-plot").first
        assert wait_until(lambda: summary.bounding_box()["width"]
                          >= 0.9 * chart.bounding_box()["width"], 10), \
            (summary.bounding_box(), chart.bounding_box())
    finally:
        page.context.close()


def test_the_overlay_video_plays_with_the_uploads_sound(browser, app_url, output_dir):
    """obama.mp4 has a voice: the overlay the page shows plays it, as the browser decodes it."""
    page = new_page(browser)
    try:
        analyse_on_the_video_page(page, app_url, SAMPLES / "videos" / "obama.mp4", 25)
        page.locator("text=/Done: [0-9]+ frames/").wait_for(timeout=120_000)
        video = page.locator('[data-testid="stVideo"]').first
        video.wait_for(timeout=30_000)
        # muted, as a page may start playing without a click; the sound is decoded all the same
        decoded = video.evaluate("""async v => {
            v.muted = true; await v.play();
            while (v.currentTime < 0.5 && !v.ended) await new Promise(r => setTimeout(r, 50));
            return [v.webkitAudioDecodedByteCount, v.webkitVideoDecodedByteCount]; }""")
        shot(page, output_dir, "e2e_video_with_sound.png")
        assert decoded[0] > 0 and decoded[1] > 0, decoded
    finally:
        page.context.close()


MARKDOWN_NAME = ("**bold** [link](javascript:alert(1)) ![img](t.png) :red[red] $x^2$ "
                 "www.example.com me@example.com.avi")


def test_a_video_named_in_markdown_is_named_as_written_and_outlasts_a_look_elsewhere(
        browser, app_url, output_dir, tmp_path):
    """A file name is shown as the person wrote it (no bold, link, picture or colour made of
    it), and the results are still there after a look at the home page, when the uploader has
    forgotten the file."""
    from densehead.dashboard.text import WORD_JOINER

    clip = tmp_path / MARKDOWN_NAME
    clip.write_bytes((SAMPLES / "videos" / "orlando_bloom.avi").read_bytes())
    page = new_page(browser)
    try:
        analyse_on_the_video_page(page, app_url, clip, 10)
        page.locator("text=/Done: [0-9]+ frames/").wait_for(timeout=120_000)
        via_home(page, "Video analysis")
        kept = page.locator('[data-testid="stAlert"]', has_text="analysed earlier")
        kept.wait_for(timeout=60_000)
        shot(page, output_dir, "e2e_video_results_kept.png")
        assert f"“{MARKDOWN_NAME}”" in kept.inner_text().replace(WORD_JOINER, "")   # invisible
        assert kept.locator("strong, a, img, .katex").count() == 0
        # the overlay and its files are still there
        page.locator('[data-testid="stVideo"]').first.wait_for(timeout=30_000)
        frames = json.loads(download(page, "Download per-frame results (.json)"))["frames"]
        assert len(frames) == 10
    finally:
        page.context.close()


def test_a_moved_cookie_means_nothing_on_a_server_that_is_no_replica(browser, app_url):
    """Only the replicas' proxy moves a browser; any site on this host name can set a cookie
    saying it did, and a single server must not repeat it (a banner with its text was shown)."""
    from densehead.dashboard.proxy import MOVED_COOKIE

    page = new_page(browser)
    try:
        page.context.add_cookies([{"name": MOVED_COOKIE, "value": "r1", "url": app_url}])
        go_to_page(page, app_url)
        page.get_by_text("Model status").wait_for(timeout=60_000)
        assert page.get_by_text("stopped, and the page reconnected").count() == 0
    finally:
        page.context.close()


def long_video(path: Path, frames: int = 1000) -> Path:
    """The orlando sample looped to `frames` frames (40 s at 25 fps): an analysis that lasts."""
    source = list(iter_frames(SAMPLES / "videos" / "orlando_bloom.avi"))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(frames):
            image = np.ascontiguousarray(source[i % len(source)][:240, :320])
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        out.mux(stream.encode())
    return path


def test_leaving_the_video_page_mid_analysis_says_it_stopped(browser, app_url, status_file,
                                                             output_dir, tmp_path):
    """A person starts analysing a long video (its Analyse button greyed out meanwhile) and opens
    Home before it is done: on coming back the page says the analysis stopped, and nothing of it
    stays on the server's disk."""
    known = {s["id"] for s in read_status(status_file)["sessions"]}
    page = new_page(browser)
    try:
        go_to_page(page, app_url, "/Video_analysis")
        choose(page, "Overlay", "mesh")
        page.locator('[data-testid="stFileUploader"] input[type=file]').set_input_files(
            str(long_video(tmp_path / "long talk.mp4")))
        click(page.get_by_role("button", name="Analyse"), 60_000)
        page.locator("text=/Frame [0-9]+ of ~1000/").first.wait_for(timeout=120_000)
        # a second click would restart the analysis: the button is greyed out while it runs
        assert page.get_by_role("button", name="Analyse").is_disabled()
        nav = page.locator('[data-testid="stSidebarNav"]')
        click(nav.get_by_text("Home", exact=True))
        page.get_by_text("Model status").wait_for(timeout=60_000)
        click(nav.get_by_text("Video analysis", exact=True))
        page.get_by_text("The analysis of “long talk.mp4” stopped before its end").wait_for(timeout=60_000)
        shot(page, output_dir, "e2e_video_left_mid_analysis.png")
        status = status_since(status_file, time.time())
        (files,) = [s["video_files"] for s in status["sessions"]
                    if s["id"] not in known and "video_files" in s]
        assert files["files"] == 0, files   # neither the upload nor a partial overlay video
        assert page.locator("text=Traceback").count() == 0
    finally:
        page.context.close()
