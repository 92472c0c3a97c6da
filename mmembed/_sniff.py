"""Tell a file's type from its bytes, never from its name."""

from __future__ import annotations

import filetype

from mmembed.errors import UnsupportedMediaError

__all__ = ["HEAD_BYTES", "check_text_block", "describe", "sniff"]

#: How many leading bytes are enough to recognise every supported format.
HEAD_BYTES = 8192

# filetype reports a few aliases; the API and the rest of mmembed use one spelling each.
_ALIASES = {
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/x-flac": "audio/flac",
    "audio/x-aiff": "audio/aiff",
    "audio/x-m4a": "audio/mp4",
    "audio/m4a": "audio/mp4",
    "video/x-m4v": "video/mp4",
    "video/x-matroska": "video/x-matroska",
    "image/x-ms-bmp": "image/bmp",
    "audio/mpeg3": "audio/mpeg",
    "audio/mp3": "audio/mpeg",
}

# ISO-BMFF major brands that filetype does not know (it recognises isom, mp41, mp42, M4A, qt).
_FTYP_BRANDS = {
    b"isom": "video/mp4",
    b"iso2": "video/mp4",
    b"iso4": "video/mp4",
    b"iso5": "video/mp4",
    b"iso6": "video/mp4",
    b"mp41": "video/mp4",
    b"mp42": "video/mp4",
    b"avc1": "video/mp4",
    b"dash": "video/mp4",
    b"msnv": "video/mp4",
    b"M4V ": "video/mp4",
    b"M4VH": "video/mp4",
    b"M4VP": "video/mp4",
    b"3gp4": "video/3gpp",
    b"3gp5": "video/3gpp",
    b"3gp6": "video/3gpp",
    b"3g2a": "video/3gpp2",
    b"qt  ": "video/quicktime",
    b"M4A ": "audio/mp4",
    b"M4B ": "audio/mp4",
    b"f4a ": "audio/mp4",
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"hevc": "image/heic",
    b"heim": "image/heic",
    b"heis": "image/heic",
    b"mif1": "image/heif",
    b"msf1": "image/heif",
    b"avif": "image/avif",
    b"avis": "image/avif",
}


# WAV in a big-endian RIFX container, or in RF64/BW64 (files over 4 GB): filetype knows only the
# RIFF spelling; libsndfile, which reads our audio, takes all of them
_WAV_CONTAINERS = (b"RIFF", b"RIFX", b"RF64", b"BW64")


def _wav(head: bytes) -> str | None:
    if head[:4] in _WAV_CONTAINERS and head[8:12] == b"WAVE":
        return "audio/wav"
    return None


def _ftyp(head: bytes) -> str | None:
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(head[8:12])
    return None


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return True
    if b"\x00" in head:
        return False
    for cut in range(4):  # the head may end inside a multi-byte character
        try:
            head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return True
    return False


def sniff(head: bytes) -> str | None:
    """The MIME type of data starting with ``head``, or ``None`` when it is not recognised.

    Plain UTF-8 text (no NUL bytes) is ``text/plain``.
    """
    mime = _ftyp(head) or _wav(head)
    if mime is None:
        try:
            kind = filetype.guess(head)
        except Exception:  # a sniffer must never fail on odd bytes
            kind = None
        mime = kind.mime if kind is not None else None
    if mime is not None:
        mime = _ALIASES.get(mime, mime)
        if mime == "audio/mp4" and _ftyp(head) is None and head[4:8] == b"ftyp":
            mime = "video/mp4"
        return mime
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if _looks_like_text(head):
        return "text/plain"
    return None


def check_text_block(block: bytes, offset: int, name: str) -> None:
    """Refuse a block of a "text" file holding NUL bytes: binary data, never text (at ``offset``
    of the file). UTF-8 text has no NUL, so a text read block by block is refused at the first
    such block, before more is read or anything is sent."""
    at = block.find(b"\0")
    if at >= 0:
        raise UnsupportedMediaError(
            f"{name}: binary data (a NUL byte at byte {offset + at:,}) in what starts as text; "
            "it is not a text file: leave it out, or extract its text first"
        )


def describe(head: bytes) -> str:
    """A short human description of unrecognised bytes, for error messages."""
    mime = sniff(head)
    if mime is not None:
        return mime
    shown = head[:8].hex(" ")
    return f"unknown binary data (first bytes: {shown or 'none'})"
