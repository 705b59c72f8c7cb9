"""The dashboard's code; the Streamlit pages (app.py, pages/) stay thin and call into here.

Server side: per-session resources and their release (sessions), the status file (status, cpu,
heap), one live stream (live), recordings, the parts of aiortc, aioice and streamlit-webrtc we
replace (vp8, processing_track, jitter_buffer, bitrate_floor, ice_consent, put in place by
library_parts), WebRTC settings, starting the server (serve), several servers behind nginx
(replicas, proxy). Page side: the cached pipeline, sidebar widgets, uploads, Plotly figures,
overlays with a visible fallback, the live series buffer, playable videos.

It imports Streamlit, Plotly, streamlit-webrtc, aiortc, aioice and PyAV (the `dashboard`
extra); nothing in the library imports it, so the library installs and runs without them.

May import: core, weights, engine, render, io, batch.
"""
