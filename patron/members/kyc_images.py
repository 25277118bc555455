"""Proving that an uploaded ID photo is really a JPEG or PNG image (KYC-1, KYC-2).

A file name or a client's ``Content-Type`` proves nothing, so neither is consulted: the
bytes are decoded with Pillow, and only what decodes completely as JPEG or PNG is kept.
The checks, in order, each with a stable code for the member:

1. ``image_required``: nothing was uploaded.
2. ``image_too_large``: more bytes than ``PATRON_KYC_MAX_IMAGE_BYTES``.
3. ``image_invalid``: Pillow cannot identify it (a text file named ``.jpg``).
4. ``image_type_not_allowed``: a real image, but not JPEG or PNG (GIF, WebP, BMP...).
5. ``image_too_many_pixels``: the header declares more pixels than
   ``PATRON_KYC_MAX_IMAGE_PIXELS`` (a "decompression bomb": a few kilobytes that would
   expand to gigabytes when decoded). Checked from the header, before any decoding.
6. ``image_invalid``: ``verify()`` finds broken structure (bad chunk checksums), or a
   second, full ``load()`` finds the data truncated or corrupt. Both are needed: ``verify``
   does not decode pixels and a fresh image object is required after it.

What is stored is not the upload but a re-encoding of the decoded pixels, in the same
format: that drops EXIF and other metadata (phones put GPS positions and device serials
there, which KYC does not need, PRIV-1) and anything smuggled after the image data
(polyglot files). EXIF orientation is applied first so reviewers see the card upright.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from django.conf import settings

# Plain gettext: messages are made while serving a request, in its language.
from django.utils.translation import gettext as _
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from patron.core.exceptions import FieldError

# Formats Pillow reports -> the content type we store and serve.
ALLOWED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png"}

# PATRON_KYC_MAX_IMAGE_PIXELS (default 40 MP) is more than any phone camera takes of an ID
# card; far below Pillow's own bomb limit (89 MP), which is global to the process and so not
# ours to lower.

# JPEG quality for the re-encoding: visually lossless for reading an ID card.
_JPEG_QUALITY = 90


class ImageRefused(Exception):
    """An upload that is not an acceptable ID photo; carries the field error to show."""

    def __init__(self, error: FieldError):
        super().__init__(error.code)
        self.error = error


@dataclass(frozen=True)
class CheckedImage:
    """A decoded, re-encoded image that is safe to store and to serve back."""

    data: bytes
    content_type: str
    width: int
    height: int


def max_image_bytes() -> int:
    return int(settings.PATRON_KYC_MAX_IMAGE_BYTES)


def max_image_pixels() -> int:
    return int(settings.PATRON_KYC_MAX_IMAGE_PIXELS)


def _refuse(field: str, code: str, message: str) -> ImageRefused:
    return ImageRefused(FieldError(field, code, message))


def check_image(data: bytes | None, *, field: str) -> CheckedImage:
    """Decode ``data`` completely; return a clean re-encoding or raise ``ImageRefused``."""
    if not data:
        raise _refuse(field, "image_required", _("Upload a photo of the ID card."))
    limit = max_image_bytes()
    if len(data) > limit:
        raise _refuse(
            field,
            "image_too_large",
            _("The photo is larger than %(mb)s MB.") % {"mb": round(limit / 1024 / 1024, 1)},
        )
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # pragma: no cover - a process-wide misconfiguration
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES must stay False")

    invalid = _refuse(field, "image_invalid", _("The file is not a readable JPEG or PNG image."))
    bomb = _refuse(
        field, "image_too_many_pixels", _("The photo has too many pixels; take a smaller one.")
    )
    with warnings.catch_warnings():
        # Pillow only *warns* between its limit and twice its limit: make that a refusal.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as probe:
                image_format = probe.format
                width, height = probe.size
                if image_format not in ALLOWED_FORMATS:
                    raise _refuse(
                        field,
                        "image_type_not_allowed",
                        _("Only JPEG and PNG photos are accepted."),
                    )
                if width * height > max_image_pixels():
                    raise bomb
                probe.verify()
            # verify() leaves the object unusable: open again and decode every pixel.
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                clean = _reencode(image, image_format)
        except ImageRefused:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise bomb from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
            # Pillow signals broken data with all of these, depending on the plugin.
            raise invalid from exc
        except Exception as exc:
            # Any other failure inside a decoder is still "not a readable image", never a 500.
            raise invalid from exc
    return CheckedImage(
        data=clean, content_type=ALLOWED_FORMATS[image_format], width=width, height=height
    )


def _reencode(image: Image.Image, image_format: str) -> bytes:
    upright = ImageOps.exif_transpose(image)
    out = io.BytesIO()
    if image_format == "JPEG":
        if upright.mode not in ("RGB", "L"):
            upright = upright.convert("RGB")
        upright.save(out, format="JPEG", quality=_JPEG_QUALITY)
    else:
        if upright.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):
            upright = upright.convert("RGBA")
        upright.save(out, format="PNG")
    return out.getvalue()
