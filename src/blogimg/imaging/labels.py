"""Provenance labels: every file made from a generated image says, in XMP, how it was made.

The EU AI Act (Art. 50(2)) asks that generated images be marked in a machine-readable form, and
every resize or re-encode (blogimg's included) drops whatever the provider put in its original.
So each file blogimg writes (master, variants, thumbnail) gets one small XMP packet, in standard
fields wherever one exists:

- ``Iptc4xmpExt:DigitalSourceType``: the IPTC NewsCodes digital source type. A model's image is
  ``trainedAlgorithmicMedia``; the offline ``card`` provider draws text on a gradient with plain
  code and no trained model, which IPTC calls ``algorithmicMedia`` ("created purely by an
  algorithm not based on any sampled training data"). ``digitalCreation`` (shown as "digital
  art") is media a *person* made with digital tools, which a card is not.
- ``xmp:CreatorTool``: ``blogimg``, the software that wrote the file.
- ``Iptc4xmpExt:AISystemUsed`` and ``Iptc4xmpExt:AISystemVersionUsed`` (IPTC Photo Metadata
  2025.1): the provider and the model, for a model's image only.
- ``blogimg:Provider`` and ``blogimg:Model`` (namespace ``https://blogimg.dev/ns/1.0/``): the
  provider and model for every image, the card's too, so a file can be traced to its job.

Nothing else is carried: EXIF (GPS, camera, dates), IPTC-IIM and the provider's own XMP stay
stripped, as before; only the small sRGB profile colour_profile.py keeps survives beside it.

libvips writes the ``xmp-data`` blob into JPEG, WebP and AVIF when saving with
``keep=ForeignKeep.XMP``. Its PNG saver (8.18) would write it as a compressed ``zTXt`` chunk, a
place the XMP specification does not give it; so a PNG master is saved without XMP and gets its
one packet as an ``iTXt`` chunk keyed ``XML:com.adobe.xmp``, where the specification puts it (and
where libvips reads it back from, for label_from_image).

Files remade later from a stored master (repair, refocus, new variant widths) keep the master's
label: it is read back from the master's own packet and written afresh, never copied verbatim.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import pyvips

__all__ = ["ALGORITHMIC_MEDIA", "TRAINED_ALGORITHMIC_MEDIA", "XMP_FIELD", "ProvenanceLabel",
           "add_png_xmp", "label_from_image", "labelled", "with_label"]

XMP_FIELD = "xmp-data"
_SOURCE_TYPES = "http://cv.iptc.org/newscodes/digitalsourcetype/"
TRAINED_ALGORITHMIC_MEDIA = _SOURCE_TYPES + "trainedAlgorithmicMedia"
ALGORITHMIC_MEDIA = _SOURCE_TYPES + "algorithmicMedia"
#: Providers that draw without any trained model: their images are algorithmicMedia.
_ALGORITHMIC_PROVIDERS = frozenset({"card"})
_NAMESPACES = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "blogimg": "https://blogimg.dev/ns/1.0/",
}
#: A label packet is a few hundred bytes; a larger one in a master is not ours and is not parsed.
_MAX_PACKET_BYTES = 16 * 1024
#: Characters kept of a provider or model name: at most 4 UTF-8 bytes each, 6 once escaped (&quot;),
#: and each value is written twice, so a packet stays well under _MAX_PACKET_BYTES.
_MAX_ATTRIBUTE_CHARACTERS = 256


@dataclass(frozen=True, slots=True)
class ProvenanceLabel:
    """Who made an image: the provider's name and the model it reported."""

    provider: str
    model: str

    @property
    def source_type(self) -> str:
        """The IPTC digital source type URI for this provider's images."""
        if self.provider in _ALGORITHMIC_PROVIDERS:
            return ALGORITHMIC_MEDIA
        return TRAINED_ALGORITHMIC_MEDIA

    def packet(self) -> bytes:
        """The XMP packet, UTF-8; provider and model are XML-escaped (quotes too)."""
        provider, model = _attribute(self.provider), _attribute(self.model)
        ai_system = ""
        if self.source_type == TRAINED_ALGORITHMIC_MEDIA:
            ai_system = (f'\n   Iptc4xmpExt:AISystemUsed="{provider}"'
                         f'\n   Iptc4xmpExt:AISystemVersionUsed="{model}"')
        declarations = "".join(f'\n   xmlns:{prefix}="{uri}"' for prefix, uri in _NAMESPACES.items()
                               if prefix not in {"x", "rdf"})
        text = (
            '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
            f'<x:xmpmeta xmlns:x="{_NAMESPACES["x"]}">\n'
            f' <rdf:RDF xmlns:rdf="{_NAMESPACES["rdf"]}">\n'
            f'  <rdf:Description rdf:about=""{declarations}\n'
            f'   Iptc4xmpExt:DigitalSourceType="{self.source_type}"\n'
            f'   xmp:CreatorTool="blogimg"{ai_system}\n'
            f'   blogimg:Provider="{provider}"\n'
            f'   blogimg:Model="{model}"/>\n'
            ' </rdf:RDF>\n'
            '</x:xmpmeta>\n'
            '<?xpacket end="r"?>'
        )
        return text.encode("utf-8")


def with_label(image: pyvips.Image, label: ProvenanceLabel | None) -> pyvips.Image:
    """A copy of ``image`` whose only XMP is ``label``'s packet, or with no XMP when None."""
    image = image.copy()  # never change the metadata of an image other threads encode from
    if image.get_typeof(XMP_FIELD):
        image.remove(XMP_FIELD)
    if label is not None:
        image.set_type(pyvips.GValue.blob_type, XMP_FIELD, label.packet())
    return image


def labelled(image: pyvips.Image, enabled: bool, label: ProvenanceLabel | None = None) -> pyvips.Image:
    """``image`` ready to encode: with ``label`` (or, without one, the label already in its XMP:
    a stored master being remade), or with no XMP at all when labels are off."""
    if not enabled:
        return with_label(image, None)
    return with_label(image, label if label is not None else label_from_image(image))


def label_from_image(image: pyvips.Image) -> ProvenanceLabel | None:
    """The label in a stored master's XMP, or None when it carries no blogimg label."""
    if not image.get_typeof(XMP_FIELD):
        return None
    packet = image.get(XMP_FIELD)
    if not isinstance(packet, bytes) or len(packet) > _MAX_PACKET_BYTES:
        return None
    try:
        root = ElementTree.fromstring(packet.decode("utf-8").strip("\x00"))
    except (UnicodeDecodeError, ElementTree.ParseError):
        return None
    namespace = "{" + _NAMESPACES["blogimg"] + "}"
    for description in root.iter("{" + _NAMESPACES["rdf"] + "}Description"):
        provider = description.get(namespace + "Provider")
        model = description.get(namespace + "Model")
        if provider is not None and model is not None:
            return ProvenanceLabel(provider=provider, model=model)
    return None


def add_png_xmp(data: bytes, packet: bytes) -> bytes:
    """``data`` (a PNG libvips wrote) with the XMP ``packet`` as an iTXt chunk after IHDR."""
    header_end = 8 + 8 + 13 + 4  # signature, then IHDR: length, type, 13 bytes of data, CRC
    if data[12:16] != b"IHDR":
        raise ValueError("not a PNG that starts with IHDR")
    # iTXt: keyword, NUL, compression flag 0, method 0, empty language tag and translated keyword.
    body = b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + packet
    chunk = struct.pack(">I", len(body)) + b"iTXt" + body + struct.pack(">I", zlib.crc32(b"iTXt" + body))
    return data[:header_end] + chunk + data[header_end:]


def _attribute(value: str) -> str:
    # XML 1.0 allows no control characters but tab, newline and carriage return, no lone surrogate
    # (which UTF-8 cannot even encode) and neither U+FFFE nor U+FFFF; a model name has no reason to
    # hold one, and dropping it keeps the packet encodable and well-formed. The cap keeps the packet
    # far below what label_from_image reads back (_MAX_PACKET_BYTES) whatever a provider reports.
    printable = "".join(character for character in value
                        if (character >= " " or character in "\t\n\r")
                        and not "\ud800" <= character <= "\udfff" and character not in "\ufffe\uffff")
    return escape(printable[:_MAX_ATTRIBUTE_CHARACTERS],
                  {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})
