"""The upload form, parsed as it arrives: text fields kept (capped), the file streamed once.

An upload is ``multipart/form-data`` (twine, devpi-client, setuptools) or, for a
``:action=submit`` register without a file, ``application/x-www-form-urlencoded``. The
multipart body is parsed with ``multipart`` (bottle's author's parser: a push parser
with limits on headers, part count and part size, no dependencies) while it is read
from the socket; the ``content`` part goes straight into a blob writer, hashed as it
is written, so the bytes touch the disk once. Text fields are held in memory, so each
is capped, and so are their number and total.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from ..http.request_body import BodyReader
from .httpkit import APIError

MAX_FIELDS = 1000  # parts of one form (fields, list entries and the file)
MAX_FIELD = 64 * 1024  # bytes of one text field
MAX_DESCRIPTION = 4 * 1024 * 1024  # bytes of the ``description`` field (a long README)
MAX_FORM_TEXT = 8 * 1024 * 1024  # bytes of all text fields together
MAX_PART_HEADER = 8 * 1024  # bytes of one header line of a part (its name and file name)
LONG_FIELDS = {"description": MAX_DESCRIPTION}
FILE_FIELD = "content"
CHUNK = 256 * 1024


class Form:
    """The text fields, by name, each a list of strings in the order sent (bottle's
    FormsDict interface, the part views_upload uses)."""

    def __init__(self) -> None:
        self._items: dict[str, list[str]] = {}

    def append(self, key: str, value: str) -> None:
        self._items.setdefault(key, []).append(value)

    def get(self, key: str, default: Any = None) -> Any:
        values = self._items.get(key)
        return values[-1] if values else default

    getunicode = get

    def getall(self, key: str) -> list[str]:
        return list(self._items.get(key, []))

    def __contains__(self, key: object) -> bool:
        return key in self._items


class UploadedFile:
    """The ``content`` part: its file name and the writer that holds its bytes."""

    def __init__(self, filename: str, writer: Any):
        self.raw_filename = filename
        self.writer = writer


def read_form(environ: dict[str, Any], max_file: int, open_file: Callable[[str, Form], Any],
              check_filename: Callable[[str], None]) -> tuple[Form, UploadedFile | None]:
    """Parse the request's form, a body of at most ``max_file`` bytes. ``open_file(filename,
    fields so far)`` gives the blob writer for the ``content`` part; ``check_filename`` may refuse
    the part's name before a byte of it is stored. On any error the writer is discarded."""
    import multipart

    ctype, options = multipart.parse_options_header(environ.get("CONTENT_TYPE") or "")
    if ctype == "application/x-www-form-urlencoded":
        return _urlencoded(environ), None
    if ctype != "multipart/form-data" or not options.get("boundary"):
        raise APIError(400, f"the upload must be multipart/form-data, not {ctype or 'without a Content-Type'}")
    body = BodyReader(environ, max_file, "upload")
    form = Form()
    upload: UploadedFile | None = None
    text_total = 0
    part: Any = None
    field = ""
    in_file = False  # the current part is the content file
    value: list[bytes] = []
    size = 0
    try:
        parser = multipart.PushMultipartParser(options["boundary"], content_length=body.length or -1,
                                               max_segment_count=MAX_FIELDS, max_header_size=MAX_PART_HEADER)
        for event in parser.parse_blocking(body.read, CHUNK):
            if isinstance(event, multipart.MultipartSegment):
                part, value, size = event, [], 0
                field = part.name or ""  # None for a part without a Content-Disposition
                in_file = field == FILE_FIELD and part.filename is not None
                if in_file:
                    if upload is not None:
                        raise APIError(400, "the form has two content files")
                    check_filename(part.filename)
                    upload = UploadedFile(part.filename, open_file(part.filename, form))
            elif event is None:  # the end of the part
                if not in_file:
                    form.append(field, b"".join(value).decode("utf-8", "replace"))
                part, in_file = None, False
            elif in_file:
                upload.writer.write(event)  # type: ignore[union-attr]
                if upload.writer.size > max_file:  # type: ignore[union-attr]
                    raise APIError(413, f"upload too large: the limit is {max_file} bytes")
            else:
                size += len(event)
                text_total += len(event)
                limit = LONG_FIELDS.get(field, MAX_FIELD)
                if size > limit:
                    raise APIError(413, f"form field {field[:60]!r} too large: the limit is {limit} bytes")
                if text_total > MAX_FORM_TEXT:
                    raise APIError(413, f"form fields too large: the limit is {MAX_FORM_TEXT} bytes in all")
                value.append(event)
    except multipart.ParserLimitReached as e:
        _discard(upload)
        raise APIError(413, f"form too large: {e} (the limits are {MAX_FIELDS} parts and "
                            f"{MAX_PART_HEADER} bytes per part header line)") from None
    except multipart.MultipartError as e:
        _discard(upload)
        raise APIError(400, f"malformed form body: {e}") from None
    except BaseException:
        _discard(upload)
        raise
    return form, upload


def _discard(upload: UploadedFile | None) -> None:
    if upload is not None:
        upload.writer.discard()


def _urlencoded(environ: dict[str, Any]) -> Form:
    raw = BodyReader(environ, MAX_FORM_TEXT, "form").read_all()
    form = Form()
    try:
        pairs = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError as e:
        raise APIError(413, f"form has too many fields: {e}") from None
    for key, value in pairs:
        limit = LONG_FIELDS.get(key, MAX_FIELD)
        if len(value) > limit:
            raise APIError(413, f"form field {key[:60]!r} too large: the limit is {limit} bytes")
        form.append(key, value)
    return form
