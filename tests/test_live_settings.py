"""The live page's controls turned into the stream's settings (dashboard.live.LiveSettings)."""
from __future__ import annotations

from helpers import shared_pipeline

from densehead.dashboard.live import LiveSettings
from densehead.render import draw


def test_unchanged_controls_keep_the_settings_the_stream_has():
    """Every second the panel reads the controls again: the same values must give equal
    settings, or the stream would start its tracker again and lose its faces."""
    pipe = shared_pipeline()
    now = LiveSettings(pipe)
    options = pipe.options
    again = now.chosen(pipe, draw.DEFAULT_MODE, options.score_threshold, options.max_faces,
                       now.tracker.smoothing)
    assert again == now and again.pipeline is pipe


def test_a_changed_control_changes_only_what_it_sets():
    pipe = shared_pipeline()
    now = LiveSettings(pipe)
    stricter = now.chosen(pipe, "mesh", 0.9, 2, not now.tracker.smoothing)
    assert stricter.mode == "mesh"
    options = stricter.pipeline.options
    assert (options.score_threshold, options.max_faces) == (0.9, 2)
    assert stricter.tracker.smoothing is not now.tracker.smoothing
    # the models are the base pipeline's, not loaded again
    assert stricter.pipeline.loaded is pipe.loaded
    # and going back to the base values gives the base's detection settings again
    back = stricter.chosen(pipe, "mesh", pipe.options.score_threshold, pipe.options.max_faces,
                           now.tracker.smoothing)
    assert back.pipeline.options == pipe.options and back.tracker == now.tracker
