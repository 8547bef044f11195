"""Text that is safe to draw, and turning DOT text into pictures.

Two jobs that every drawing shares:

* ``clean`` / ``escape`` / ``html_text`` make any label drawable. A label is
  whatever a user typed, so it may hold characters that are not allowed in
  XML (NUL, ESC and the other control characters, a lone surrogate) or be
  16,000 characters long. Graphviz copies label text into the SVG it writes,
  and one such character makes the whole file unreadable to an XML parser
  (and so to a browser). They are replaced by visible stand-ins, and long
  labels are shortened, before any text reaches Graphviz.
* ``render_bytes`` lays out DOT text with the system ``dot`` when it is on
  PATH, otherwise with the Graphviz engine bundled in the ``pygraphviz``
  wheel.
"""
from __future__ import annotations

import html
import os
import shutil
import subprocess
import tempfile

__all__ = ["clean", "escape", "html_text", "render_bytes", "RendererMissing", "MAX_LABEL"]

MAX_LABEL = 64  # characters of a label drawn in a box; longer ones are shortened


def clean(text: object, limit: int = MAX_LABEL) -> str:
    """``text`` as a string that any XML file can hold, at most about ``limit`` characters.

    * C0 control characters (NUL, ESC, ...) become their Unicode "control
      picture" (NUL is drawn as U+2400, ESC as U+241B), so a reader still sees
      that something odd was in the label; tab becomes a space, and a newline
      stays (it is a line break in the box).
    * DEL and the C1 controls, lone surrogates (half of a UTF-16 pair, which
      no UTF-8 file can hold) and the non-characters U+FFFE/U+FFFF become the
      replacement character U+FFFD.
    * Text longer than ``limit`` keeps its start and says how long it was.
    """
    text = str(text)
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text)} characters)"
    out = []
    for char in text:
        code = ord(char)
        if char in "\n\r":
            out.append("\n")
        elif char == "\t":
            out.append(" ")
        elif code < 0x20:
            out.append(chr(0x2400 + code))
        elif 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF):
            out.append("\ufffd")
        else:
            out.append(char)
    return "".join(out)


def escape(text: object, limit: int = MAX_LABEL) -> str:
    """``text`` cleaned (see ``clean``) and made safe inside a double-quoted DOT string.

    Backslashes and quotes are escaped, so a label can neither close the
    string and add attributes of its own nor use Graphviz's escapes (``\\N``,
    ``\\G``); a newline becomes DOT's centred line break. Braces, angle
    brackets and ``|`` are plain characters in a quoted string of a
    non-record node, the only kind drawn here.
    """
    text = clean(text, limit).replace("\\", "\\\\").replace('"', '\\"')
    return text.replace("\n", "\\n")


def html_text(text: object, limit: int = MAX_LABEL) -> str:
    """``text`` cleaned and escaped for a Graphviz HTML-like label (or an HTML page)."""
    return html.escape(clean(text, limit), quote=True).replace("\n", "<br/>")


class RendererMissing(RuntimeError):
    """Neither a ``dot`` program nor the pygraphviz package is available."""


def render_bytes(source: str, fmt: str) -> bytes:
    """Lay out and draw DOT ``source`` as ``fmt`` bytes: system dot first, then pygraphviz."""
    dot = shutil.which("dot")
    if dot is not None:
        done = subprocess.run([dot, f"-T{fmt}"], input=source.encode("utf-8"), capture_output=True, check=False)
        if done.returncode == 0:
            return done.stdout
    try:
        import pygraphviz
    except ImportError:
        raise RendererMissing(
            "no Graphviz renderer found: install the pygraphviz wheel (pip install 'pygraphviz>=2.0', "
            "it bundles the Graphviz engine) or the Graphviz 'dot' program"
        ) from None
    graph = pygraphviz.AGraph(string=source)
    with _without_fontconfig_version_warning():
        return graph.draw(format=fmt, prog="dot")


# Why a warning is filtered here. The pygraphviz wheel bundles its own copy of
# Fontconfig (2.13.1, built for manylinux_2_28), but Fontconfig reads the
# system's configuration: /etc/fonts and the template folder
# /usr/share/fontconfig/conf.avail. When it starts, 2.13 parses every template
# there (to list them for fc-conflist) even though none is enabled, and the
# templates of a newer system Fontconfig (2.14 on Debian 12) use an element
# 2.13 does not know, so it prints, once per process:
#     Fontconfig warning: ".../05-reset-dirs-sample.conf", line 6: unknown element "reset-dirs"
# No configuration file can avoid it (the template folder is compiled in), and
# the element only matters to the sample file that is never loaded: fonts are
# found and drawn correctly. So the bundled engine's standard error is
# captured while it draws, and everything except that version-skew warning is
# passed on. The system ``dot`` uses the system's own Fontconfig and never
# prints it.
_FONTCONFIG_VERSION_SKEW = ("Fontconfig warning:", "unknown element")


class _without_fontconfig_version_warning:
    """Capture file descriptor 2 while the bundled Graphviz draws; pass on all but that warning."""

    def __enter__(self) -> None:
        self.saved = None
        try:
            self.capture = tempfile.TemporaryFile()
            self.saved = os.dup(2)
            os.dup2(self.capture.fileno(), 2)
        except OSError:  # no usable descriptor 2 (a GUI without a console): nothing to filter
            self.saved = None

    def __exit__(self, *exc_info: object) -> None:
        if self.saved is None:
            return
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.capture.seek(0)
        text = self.capture.read().decode("utf-8", "replace")
        self.capture.close()
        kept = [line for line in text.splitlines(keepends=True)
                if not all(part in line for part in _FONTCONFIG_VERSION_SKEW)]
        if kept:
            os.write(2, "".join(kept).encode("utf-8"))
