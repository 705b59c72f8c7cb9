"""Text from outside (an upload's name, a message that names it) shown on a page as it is:
Streamlit renders an alert's text as Markdown, where a file name could bring bold type, links,
remote images, LaTeX or colours."""
from __future__ import annotations

import re

# every ASCII punctuation character: CommonMark lets a backslash make any of them literal
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# Streamlit makes links of www.x.y, a@b.c and http(s)://… in the text as shown, escaped or
# not; an invisible word joiner before the "." of www., before "@" and before "://" keeps them
# text (and only there: a name copied from the page carries it)
_LINK_MAKERS = re.compile(r"(?i)(?<=www)(?=\.)|(?=@)|(?=://)")
WORD_JOINER = "\u2060"


def plain(text: str) -> str:
    """`text` escaped so that Markdown shows every character of it as written."""
    return _PUNCTUATION.sub(r"\\\1", _LINK_MAKERS.sub(WORD_JOINER, text))
