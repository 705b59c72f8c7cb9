"""Names from uploads, as the pages show them and as they name the files people download."""
from __future__ import annotations

import re

from densehead.dashboard.text import WORD_JOINER, plain
from densehead.dashboard.uploads import DOWNLOAD_STEM_BYTES, download_stem


def test_plain_text_escapes_every_markdown_character_and_keeps_the_text():
    name = ("**bold** [x](https://e.com) ![i](t.png) :red[r] $x^2$ `c` <b> # ~~s~~ é 中 "
            "www.e.com me@e.com &amp;.avi")
    escaped = plain(name)
    # what Markdown shows: the name itself (escapes undone, word joiners invisible)
    assert re.sub(r"\\(.)", r"\1", escaped).replace(WORD_JOINER, "") == name
    # no punctuation left bare, so no Markdown, LaTeX or colour syntax can form
    assert not re.search(r"(?<!\\)[*\[\]()!:$`<>#~_]", escaped)
    # Streamlit links www.x.y, a@b.c and https://… even when escaped: a word joiner breaks them
    shown = re.sub(r"\\(.)", r"\1", escaped)
    assert not re.search(rf"(?i)www\.|[^{WORD_JOINER}](@|://)", shown), shown
    assert shown.count(WORD_JOINER) == 3   # nowhere else: a name copied from the page has them


def test_download_names_lose_folders_and_characters_file_systems_refuse():
    assert download_stem("../../../etc/evil.jpg", "photo") == "evil"
    assert download_stem("C:\\Users\\me\\face.png", "photo") == "face"
    assert download_stem("<img src=x onerror=alert(1)>.jpg", "photo") == \
        "_img src=x onerror=alert(1)_"
    assert download_stem("café 中文.jpeg", "photo") == "café 中文"
    assert download_stem("..", "photo") == download_stem("", "photo") == "photo"


def test_a_long_name_is_cut_to_leave_room_for_what_follows_it():
    """A 250-byte name is legal on disk; with "_face0_textured.zip" after it, unzip refused it."""
    for name in ("a" * 250 + ".jpg", "é" * 125 + ".jpg"):
        stem = download_stem(name, "photo")
        assert 0 < len(stem.encode()) <= DOWNLOAD_STEM_BYTES
        assert len(f"{stem}_face0_texture.png".encode()) < 255
        stem.encode().decode()   # cut between characters, never inside one
