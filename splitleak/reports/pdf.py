"""Write report pages to one PDF, byte for byte the same for the same pages.

matplotlib's PDF backend is deterministic once the creation date is left out: fonts are the
DejaVu files bundled with matplotlib (subset, Type 42), object ids are counters, images are
embedded raw. The file is written next to its destination and renamed into place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from splitleak import __version__
from splitleak.reports.style import MUTED


def pdf_metadata(title: str) -> dict[str, str | None]:
    """Fixed metadata: no CreationDate / ModDate, so the bytes depend only on the content."""
    return {
        "Title": title,
        "Creator": f"splitleak {__version__}",
        "Producer": f"splitleak {__version__} with matplotlib {matplotlib.__version__}",
        "CreationDate": None,
        "ModDate": None,
    }


def write_pdf(pages: Sequence[Figure], path: str | os.PathLike[str], *, title: str, footer: str = "") -> Path:
    """Save `pages` in order, numbered 'footer · page k of n'; replaces `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    staging = staging_dir / path.name  # created by PdfPages with the usual (umask) permissions
    try:
        try:
            with PdfPages(staging, metadata=pdf_metadata(title)) as pdf:
                for number, fig in enumerate(pages, start=1):
                    text = f"{footer} · page {number} of {len(pages)}" if footer else f"page {number} of {len(pages)}"
                    mark = fig.text(0.5, 0.02, text, fontsize=7, color=MUTED, ha="center", va="bottom")
                    try:
                        pdf.savefig(fig)
                    finally:
                        mark.remove()
        except zlib.error as err:  # closing after a failed write (a full disk) hides that OSError behind zlib's
            if isinstance(err.__context__, OSError):
                raise err.__context__ from None
            raise
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
    return path
