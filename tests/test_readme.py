"""The README's examples (and those in docs/) run as written, and the library stands without the
dashboard."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from paths import ROOT

GUIDES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks() -> list[str]:
    return [block for guide in GUIDES
            for block in re.findall(r"```python\n(.*?)```", guide.read_text(), flags=re.S)]


def test_readme_python_block_runs_as_written(tmp_path, samples):
    blocks = python_blocks()
    assert blocks, "the README has no Python example"
    shutil.copy(samples / "photos" / "JianzhuGuo.jpg", tmp_path / "photo.jpg")
    shutil.copy(samples / "videos" / "obama.mp4", tmp_path / "video.mp4")
    (tmp_path / "notes.txt").write_text("not a picture")
    printed = ""
    for i, code in enumerate(blocks):
        # saved and run as a script, as a reader would (`-c` hides what a script's spawned
        # worker processes do: they import it)
        script = tmp_path / f"example_{i}.py"
        script.write_text(code)
        result = subprocess.run([sys.executable, script.name], cwd=tmp_path, capture_output=True,
                                text=True, timeout=300, env=os.environ.copy())
        assert result.returncode == 0, result.stderr
        printed += result.stdout
    # what the examples print: the pose of the one face in the photo, the ImageError line and
    # the three files of the textured mesh (which must exist)
    assert re.search(r"yaw [+-]\d+\.\d  pitch [+-]\d+\.\d  roll [+-]\d+\.\d degrees", printed)
    assert "not an image" in printed
    assert "['face.obj', 'face.mtl', 'face_texture.png']" in printed
    assert all((tmp_path / name).is_file() for name in ("face.obj", "face.mtl", "face_texture.png"))
    # the batch example: both files ok, their tables and the CSV and overlay it asked for
    assert "2 files ok;" in printed
    for name in ("video.mp4.parquet", "video.mp4.csv", "video.mp4.pose.mp4", "photo.jpg.parquet"):
        assert (tmp_path / "tables" / name).is_file(), name


def test_library_imports_and_runs_without_streamlit_or_plotly(tmp_path, samples):
    """Every library module and the CLI import with Streamlit and Plotly made unimportable."""
    package = ROOT / "densehead"
    library = ("core", "weights", "engine", "render", "io", "batch", "cli")
    modules = sorted(".".join(p.relative_to(package).with_suffix("").parts)
                     for folder in (package, *(package / name for name in library))
                     for p in folder.glob("*.py") if p.stem != "__main__")
    code = (
        "import sys\n"
        "for blocked in ('streamlit', 'streamlit_webrtc', 'plotly'):\n"
        "    sys.modules[blocked] = None\n"
        "import importlib\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module('densehead.' + name.removesuffix('__init__').rstrip('.')"
        " if name != '__init__' else 'densehead')\n"
        "import densehead.cli\n"
        f"raise SystemExit(densehead.cli.main(['sparse', '-f', {str(samples / 'photos' / 'JianzhuGuo.jpg')!r},"
        f" '-o', {str(tmp_path / 'out.jpg')!r}]))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.jpg").is_file() and "1 face(s)" in result.stdout
