"""The ``<picture>`` markup the image view's copy button gives: order, escaping, formats present or not."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import unquote

from blogimg.web.picture import PictureVariant, css_url, picture_markup


class Elements(HTMLParser):
    """Every start tag with its attributes, as a browser's parser reads them (entities decoded)."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def variants(*formats: str, widths: tuple[int, ...] = (960, 480)) -> list[PictureVariant]:
    return [PictureVariant(name, width, width * 2 // 3, f"https://cdn.example/img/{width}.{name}")
            for name in formats for width in widths]


def test_sources_come_avif_then_webp_then_the_img_each_ordered_by_width() -> None:
    markup = picture_markup(variants("webp", "jpeg", "avif"), alt="A harbour", lqip="data:image/webp;base64,UklG")
    tags = Elements(markup).tags
    assert [tag for tag, _ in tags] == ["picture", "source", "source", "img"]
    avif, webp, image = (attributes for _, attributes in tags[1:])
    assert avif["type"] == "image/avif" and webp["type"] == "image/webp"
    assert avif["srcset"] == "https://cdn.example/img/480.avif 480w, https://cdn.example/img/960.avif 960w"
    assert image["srcset"] == "https://cdn.example/img/480.jpeg 480w, https://cdn.example/img/960.jpeg 960w"
    assert image["src"] == "https://cdn.example/img/960.jpeg"  # the largest fallback file
    assert (image["width"], image["height"]) == ("960", "640")
    assert image["sizes"] == avif["sizes"] == "(max-width: 960px) 100vw, 960px"
    assert image["loading"] == "lazy" and image["decoding"] == "async" and image["alt"] == "A harbour"
    assert image["style"] == "background:url(data:image/webp;base64,UklG) center/cover"


def test_alt_text_and_urls_cannot_break_out_of_their_attributes() -> None:
    hostile = '"><script>alert(1)</script><img src=x onerror=alert(2) alt="'
    files = [PictureVariant("jpeg", 480, 320, 'https://cdn.example/a b".jpg?x=<1>&y=2')]
    markup = picture_markup(files, alt=hostile, lqip="data:x');background:url(https://evil.example/)")
    assert "<script>" not in markup and "<img src=x" not in markup
    tags = Elements(markup).tags
    assert [tag for tag, _ in tags] == ["picture", "img"]  # one img: nothing injected a second
    image = tags[1][1]
    assert image["alt"] == hostile  # the browser reads back exactly the text that was written
    assert " " not in str(image["src"]) and str(image["src"]).endswith("?x=%3C1%3E&y=2")
    # The LQIP stays one CSS token: its quote and parentheses are percent-encoded.
    assert image["style"] == "background:url(data:x%27%29;background:url%28https://evil.example/%29) center/cover"


def test_formats_absent_are_left_out_and_the_img_falls_back_in_order() -> None:
    only_webp = Elements(picture_markup(variants("webp"), alt=None)).tags
    assert [tag for tag, _ in only_webp] == ["picture", "img"]  # webp is the img itself, not also a source
    assert str(only_webp[1][1]["src"]).endswith("960.webp") and only_webp[1][1]["alt"] == ""
    assert "style" not in only_webp[1][1]  # no LQIP, no background
    png_and_avif = Elements(picture_markup(variants("png", "avif"), alt="x")).tags
    assert [(tag, attributes.get("type")) for tag, attributes in png_and_avif] == [
        ("picture", None), ("source", "image/avif"), ("img", None)]
    assert str(png_and_avif[2][1]["src"]).endswith(".png")


def test_nothing_to_show_gives_no_markup_and_unknown_formats_are_ignored() -> None:
    assert picture_markup([], alt="x") == ""
    assert picture_markup([PictureVariant("tiff", 480, 320, "https://x/a.tiff")], alt="x") == ""


def test_duplicate_widths_appear_once_and_sizes_can_be_given() -> None:
    files = [*variants("jpeg", widths=(480,)), PictureVariant("jpeg", 480, 320, "https://x/again.jpeg")]
    image = Elements(picture_markup(files, alt="x", sizes="(min-width: 60em) 50vw, 100vw")).tags[1][1]
    assert str(image["srcset"]).count("480w") == 1
    assert image["sizes"] == "(min-width: 60em) 50vw, 100vw"


def test_a_url_with_a_trailing_comma_keeps_it_in_the_srcset() -> None:
    image = Elements(picture_markup([PictureVariant("jpeg", 480, 320, "https://x/c_fill,w_480,")], alt="")).tags[1][1]
    assert image["srcset"] == "https://x/c_fill,w_480%2C 480w"  # the CDN's inner commas stay as they are


def test_css_url_keeps_a_hostile_value_one_token() -> None:
    hostile = "data:image/webp;base64,AA==') } </style><script>x</script> url(\"y\\"
    value = css_url(hostile)
    assert value.startswith("url(") and value.endswith(")")
    inner = value[4:-1]
    assert not set(inner) & set("'\"()\\<> \n{}")  # nothing that ends the url(), the rule or the element
    assert unquote(inner) == hostile  # the same bytes, only percent-encoded
