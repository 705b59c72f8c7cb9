"""The dashboard's code: the Streamlit pages (app.py, pages/) stay thin and call into here.

This package imports Streamlit and Plotly (the `dashboard` extra); nothing else in densehead
imports it, so the library installs and runs without them.
"""
