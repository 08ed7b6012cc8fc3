"""Reading form posts: URL-encoded fields and multipart uploads (with their file names, which
twisted.web's ``request.args`` drops)."""

from __future__ import annotations

from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qs

MAX_BODY = 20 * 1024 * 1024  # a minute of 48 kHz stereo 24-bit WAV is about 17 MB


class FormError(ValueError):
    """A post we cannot read; ``str()`` says why."""


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


@dataclass(frozen=True)
class Form:
    fields: dict[str, str]
    files: dict[str, Upload]

    def get(self, name: str, default: str = "") -> str:
        return self.fields.get(name, default)


def parse_form(content_type: bytes, body: bytes) -> Form:
    """The fields (and files) of a POST body."""
    if len(body) > MAX_BODY:
        raise FormError(f"the upload is too large ({len(body) // 1048576} MB; at most "
                        f"{MAX_BODY // 1048576} MB)")
    kind = content_type.split(b";")[0].strip().lower()
    if kind == b"multipart/form-data":
        return _multipart(content_type, body)
    if kind in (b"application/x-www-form-urlencoded", b""):
        parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return Form({k: v[0] for k, v in parsed.items()}, {})
    raise FormError(f"unexpected form encoding {kind.decode('ascii', 'replace')!r}")


def _multipart(content_type: bytes, body: bytes) -> Form:
    head = b"Content-Type: " + content_type + b"\r\nMIME-Version: 1.0\r\n\r\n"
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise FormError("the upload could not be read (not a multipart form)")
    fields: dict[str, str] = {}
    files: dict[str, Upload] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            files[str(name)] = Upload(filename, payload)
        else:
            fields[str(name)] = payload.decode("utf-8", "replace")
    return Form(fields, files)
