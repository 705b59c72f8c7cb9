"""Text from outside (an upload's name, a message that names it) shown on a page as it is:
Streamlit renders an alert's text as Markdown, where a file name could bring bold type, links,
remote images, LaTeX or colours."""
from __future__ import annotations

import re

# every ASCII punctuation character: CommonMark lets a backslash make any of them literal
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# GitHub's autolinks (www.x.y, http://…, a@b.c) form from the characters themselves, escaped or
# not: written as character references these show as written and link nothing
_LINK_MAKERS = {".": "&#46;", ":": "&#58;", "@": "&#64;"}


def plain(text: str) -> str:
    """`text` escaped so that Markdown shows every character of it as written."""
    return _PUNCTUATION.sub(lambda m: _LINK_MAKERS.get(m[1], "\\" + m[1]), text)
