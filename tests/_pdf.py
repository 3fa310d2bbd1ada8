"""A PDF laid out as matplotlib writes one, for the tests of what recognises splitleak's reports."""

from __future__ import annotations

SPLITLEAK_INFO = b"<< /Creator (splitleak 0.1.0) /Title (Split-learning leakage report) >>"


def minimal_pdf(info: bytes = SPLITLEAK_INFO, objects: int = 3, *, other: bytes = b"<< >>") -> bytes:
    """`objects` objects (each `other`, the last the document information `info`), then one
    classic xref table (20 bytes per object) and the trailer pointing at both."""
    body, offsets = bytearray(b"%PDF-1.4\n"), [0]
    for number in range(1, objects + 1):
        offsets.append(len(body))
        body += b"%d 0 obj\n%s\nendobj\n" % (number, info if number == objects else other)
    xref = len(body)
    body += b"xref\n0 %d\n0000000000 65535 f \n" % (objects + 1)
    body += b"".join(b"%010d 00000 n \n" % offset for offset in offsets[1:])
    body += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (objects + 1, objects, xref)
    return bytes(body)
