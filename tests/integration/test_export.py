"""``blogimg export``: manifests per site generator, the markup written into the posts (twice: the
second run changes nothing), and the ``markup`` field of the image JSON.

The example posts are made once for the module with the card provider and small variants; one
copy is turned to CRLF and one gets a UTF-8 BOM, and both must keep them.
"""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from blogimg.api.app import create_app
from blogimg.config import Settings
from tests.support import API_KEY, AUTH, EXAMPLES, REPOSITORY_ROOT, query, run_cli

HUGO_SITE = REPOSITORY_ROOT / "tests" / "fixtures" / "hugo_site"
SMALL = {"BLOGIMG_VARIANT_WIDTHS": "48,80", "BLOGIMG_AVIF_EFFORT": "0", "BLOGIMG_COVER_SIZE": "192x128",
         "BLOGIMG_INLINE_SIZE": "128x128"}
CRLF_POST, BOM_POST = "kyoto-autumn.md", "sourdough-decade.md"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``posts/`` (the examples, one CRLF, one with a BOM) and ``data/``, all made."""
    root = tmp_path_factory.mktemp("export")
    posts = root / "posts"
    shutil.copytree(EXAMPLES, posts)
    crlf = posts / CRLF_POST
    crlf.write_bytes(crlf.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    bom = posts / BOM_POST
    bom.write_bytes(b"\xef\xbb\xbf" + bom.read_bytes())
    made = run_cli("generate", str(posts), data=root / "data", cwd=root, **SMALL)
    assert made.returncode == 0, made.stderr
    return root


def export(site: Path, *arguments: str) -> Any:
    return run_cli("export", *arguments, data=site / "data", cwd=site, **SMALL)


def test_write_back_twice_changes_nothing_the_second_time(site: Path, tmp_path: Path) -> None:
    posts = tmp_path / "posts"
    shutil.copytree(site / "posts", posts)
    before = {path.name: path.read_bytes() for path in posts.glob("*.md")}

    first = export(site, "--write-back", str(posts))
    assert first.returncode == 0, first.stderr
    after = {path.name: path.read_bytes() for path in posts.glob("*.md")}
    changed = {name for name in after if after[name] != before[name]}
    illustrated = {slug for (slug,) in query(site / "data" / "blogimg.db",
                                             "SELECT slug FROM blog_posts WHERE images_enabled")}
    assert changed == {f"{slug}.md" for slug in illustrated} and len(changed) >= 5
    assert f"write-back: {len(changed)} changed" in first.stdout

    second = export(site, "--write-back", str(posts))
    assert second.returncode == 0, second.stderr
    assert "write-back: 0 changed" in second.stdout
    assert {path.name: path.read_bytes() for path in posts.glob("*.md")} == after

    crlf, bom = after[CRLF_POST], after[BOM_POST]
    assert crlf.count(b"\r\n") == crlf.count(b"\n") and b"<!-- /blogimg -->" in crlf
    assert bom.startswith(b"\xef\xbb\xbf") and not bom[3:].startswith(b"\xef\xbb\xbf") and b"\r\n" not in bom
    text = bom.decode("utf-8-sig")
    markers = len(re.findall(r"<!-- image:", before[BOM_POST].decode("utf-8-sig")))
    assert len(re.findall(r"<!-- image:[^\n]*-->\n<!-- blogimg:image id=\d+ --><picture>", text)) == markers >= 1
    front = text.split("---")[1]
    # The cover is the master (JPEG or PNG), a format every reader of front matter takes.
    assert re.search(r'^image: "[^"]+\.(jpe?g|png)"$', front, re.MULTILINE), front

    # The posts still read as they did: making images from them again finds nothing to do.
    again = run_cli("generate", str(posts), data=site / "data", cwd=site, **SMALL)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr


def test_write_back_leaves_a_post_whose_images_are_not_all_made(site: Path, tmp_path: Path) -> None:
    post = tmp_path / "tcp-handshake.md"
    original = (site / "posts" / "tcp-handshake.md").read_text() + "\n<!-- image: a brand new diagram -->\n"
    post.write_text(original)
    result = export(site, "--write-back", str(post))
    assert result.returncode == 0, result.stderr
    assert "images not made yet" in result.stdout and "0 changed" in result.stdout
    assert post.read_text() == original


LAYOUTS = {
    "json": lambda slug: f"{slug}.json",
    "hugo": lambda slug: f"data/blogimg/{slug}.json",
    "jekyll": lambda slug: f"_data/blogimg/{slug}.json",
    "astro": lambda slug: f"src/content/blogimg/{slug}.json",
}


@pytest.mark.parametrize("chosen", ["json", "hugo", "jekyll", "astro", "eleventy"])
def test_each_format_writes_its_generators_layout(site: Path, tmp_path: Path, chosen: str) -> None:
    target = tmp_path / "site"  # does not exist yet: export creates it
    result = export(site, "--format", chosen, str(target))
    assert result.returncode == 0, result.stderr
    slugs = [slug for (slug,) in query(site / "data" / "blogimg.db", "SELECT slug FROM blog_posts ORDER BY slug")]
    if chosen == "eleventy":
        manifests = json.loads((target / "_data" / "blogimg.json").read_text())
        assert sorted(manifests) == slugs
    else:
        manifests = {slug: json.loads((target / LAYOUTS[chosen](slug)).read_text()) for slug in slugs}
    written = {path.relative_to(target).as_posix() for path in target.rglob("*") if path.is_file()}
    assert len(written) == (1 if chosen == "eleventy" else len(slugs))
    made = 0
    for slug, manifest in manifests.items():
        images = manifest["images"]
        made += len(images)
        assert manifest["slug"] == slug
        if images:
            assert images[0]["kind"] == "cover" and re.search(r"\.(jpe?g|png)$", manifest["cover"])
            assert manifest["cover"].rsplit("/", 3)[0] == images[0]["src"].rsplit("/", 3)[0]  # same storage
            positions = [image["position"] for image in images[1:]]
            assert positions == sorted(positions)
        for image in images:
            assert {variant["format"] for variant in image["variants"]} == {"avif", "webp"}
            assert image["srcset"]["webp"].count("w,") == len([v for v in image["variants"] if v["format"] == "webp"]) - 1
            assert image["lqip"].startswith("data:image/") and re.fullmatch(r"#[0-9a-f]{6}", image["dominant_color"])
            widest = max(v["width"] for v in image["variants"] if v["format"] == "webp")
            assert image["width"] == widest and image["height"] > 0 and image["sizes"]
            assert image["markup"].startswith("<picture>")
    succeeded = query(site / "data" / "blogimg.db", "SELECT count(*) FROM generated_images WHERE status = 'succeeded'")
    assert made == succeeded[0][0]

    again = export(site, "--format", chosen, str(target))
    assert "0 files written" in again.stdout


def test_a_bad_format_is_one_clear_line(site: Path, tmp_path: Path) -> None:
    result = export(site, "--format", "gatsby", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown export format 'gatsby'; expected one of json, hugo, jekyll, astro, eleventy"]


# --- the Hugo skeleton: every field its templates use is in every exported data file ---------------

_COMMENT = re.compile(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", re.DOTALL)
_ACTION = re.compile(r"\{\{-?(.*?)-?\}\}", re.DOTALL)
_FIELD = re.compile(r"(?<![\w)\]$])\.([a-z_]\w*(?:\.[A-Za-z_]\w*)*)")
_ROOT_FIELD = re.compile(r"\$\.([a-z_]\w*(?:\.[A-Za-z_]\w*)*)")
#: Where each template's "." starts: None for Hugo's own page (its fields are not ours to check).
_TEMPLATE_ROOTS: dict[str, list[str] | None] = {"partials/blogimg.html": ["images", "[]"]}


def field_paths(template: str, root: list[str] | None) -> set[tuple[str, ...]]:
    """Every data path (``images.[].srcset.avif``) the template reads, following with/range/end."""
    stack: list[list[str] | None] = [root]
    used: set[tuple[str, ...]] = set()
    for action in _ACTION.findall(_COMMENT.sub("", template)):
        action = re.sub(r'"[^"]*"|`[^`]*`', '""', action).strip()
        here = stack[-1]
        if here is not None:
            used |= {(*here, *name.split(".")) for name in _FIELD.findall(action)}
        if root is not None:
            used |= {(*root, *name.split(".")) for name in _ROOT_FIELD.findall(action)}
        keyword, _, rest = action.partition(" ")
        target = _FIELD.match(rest.strip())
        if keyword == "end":
            stack.pop()
        elif keyword == "with" and rest.strip().startswith("index site.Data.blogimg"):
            stack.append([])
        elif keyword in {"with", "range"}:
            inner = None if here is None or target is None else [*here, *target.group(1).split(".")]
            stack.append(inner + ["[]"] if keyword == "range" and inner is not None else inner)
        elif keyword in {"if", "define", "block"}:
            stack.append(here if keyword == "if" else root)
    assert stack == [root], f"unbalanced template: {stack}"
    return used


def missing(data: Any, path: tuple[str, ...]) -> bool:
    if not path:
        return False
    head, rest = path[0], path[1:]
    if head == "[]":
        return not isinstance(data, list) or any(missing(item, rest) for item in data)
    return not isinstance(data, dict) or head not in data or (rest != () and data[head] is not None
                                                               and missing(data[head], rest))


def test_the_hugo_skeleton_finds_every_field_it_uses(site: Path, tmp_path: Path) -> None:
    result = export(site, "--format", "hugo", str(tmp_path))
    assert result.returncode == 0, result.stderr
    used: set[tuple[str, ...]] = set()
    for template in (HUGO_SITE / "layouts").rglob("*.html"):
        name = template.relative_to(HUGO_SITE / "layouts").as_posix()
        used |= field_paths(template.read_text(), _TEMPLATE_ROOTS.get(name))
    # Every lookup goes through the partial that follows blogimg's slug rule, not the file's bare name.
    lookups = [line for template in (HUGO_SITE / "layouts").rglob("*.html")
               for line in template.read_text().splitlines() if "site.Data.blogimg" in line]
    assert lookups and all('index site.Data.blogimg (partial "blogimg-slug.html" .' in line for line in lookups)
    # The checker itself: it saw the fields the templates are about.
    assert {("images", "[]", "srcset", "avif"), ("images", "[]", "alt"), ("images", "[]", "variants", "[]", "url"),
            ("images", "[]", "sizes"), ("title",), ("cover",)} <= used
    files = list((tmp_path / "data" / "blogimg").glob("*.json"))
    assert len(files) >= 5 and any(json.loads(file.read_text())["images"] for file in files)
    for file in files:
        data = json.loads(file.read_text())
        assert [path for path in sorted(used) if missing(data, path)] == [], file.name


# --- the image JSON's markup ----------------------------------------------------------------------


class Elements(HTMLParser):
    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_the_image_json_gives_ready_markup_with_a_hostile_alt_escaped(site: Path) -> None:
    data = site / "data"
    settings = Settings(database_url=f"sqlite+aiosqlite:///{data / 'blogimg.db'}", storage_path=data / "images",
                        api_keys=[API_KEY])
    (cover_id,), = query(data / "blogimg.db", "SELECT g.id FROM generated_images g JOIN image_prompts p "
                                               "ON p.id = g.prompt_id WHERE p.kind = 'cover' LIMIT 1")
    (inline_id,), = query(data / "blogimg.db", "SELECT g.id FROM generated_images g JOIN image_prompts p "
                                                "ON p.id = g.prompt_id WHERE p.kind = 'inline' LIMIT 1")
    hostile = '"><script>alert(1)</script><img src=x onerror=alert(2)> & \'quoted\''
    with TestClient(create_app(settings), headers=AUTH) as client:
        assert client.put(f"/api/images/{inline_id}", json={"alt_text": hostile}).status_code == 200
        inline = client.get(f"/api/images/{inline_id}").json()
        cover = client.get(f"/api/images/{cover_id}").json()
        listed = client.get("/api/images/search", params={"limit": 5}).json()["items"]
    assert all(item["markup"] for item in listed)
    tags = Elements(inline["markup"]).tags
    # AVIF as a <source>; the WebP files (the fallback when no JPEG was made) in the <img>'s own srcset.
    assert [tag for tag, _ in tags] == ["picture", "source", "img"]
    assert tags[1][1]["type"] == "image/avif"
    for _, attributes in tags[1:]:
        assert all(re.fullmatch(r"\S+ \d+w", part) for part in (attributes["srcset"] or "").split(", "))
    image = tags[2][1]
    assert image["alt"] == hostile and "<script>" not in inline["markup"]
    assert image["loading"] == "lazy" and image["decoding"] == "async"
    widest = max(variant["width"] for variant in inline["variants"] if variant["format"] == "webp")
    assert image["width"] == str(widest) and image["height"] and image["sizes"]
    assert (image["src"] or "").endswith(".webp")  # no JPEG variant: the largest WebP
    assert (image["style"] or "").startswith("background:url(data:image/")
    assert Elements(cover["markup"]).tags[2][1]["loading"] == "eager"


# --- write-back where a post is awkward: it must never change what the post asks for ---------------

AWKWARD = {
    # Not read by the extractor: its block is the first paragraph, so the cover is never set there.
    "toml-post.md": '+++\ntitle = "Gardens"\n+++\n\nA first paragraph about gardens.\n\n<!-- image: a garden at dawn -->\n',
    # Inside a paragraph: a block of its own would cut the paragraph (and change the summary).
    "mid-paragraph.md": "Intro <!-- image: a lighthouse at night --> more text.\n\n<!-- image: a dune -->\n",
    "text-after.md": "# Text after\n\n<!-- image: a red kite --> and then words.\n",
    "code-span.md": "# Code span\n\nUse `<!-- image: not a marker -->` or <!-- image: a real one --> here.\n",
    "quoted.md": "# Quoted\n\n> A quote.\n>\n> <!-- image: a quiet harbour -->\n\n- item one\n\n  <!-- image: a paper boat -->\n\nLast.\n",
    "cr-only.md": "# Carriage returns\r\rSome text.\r\r<!-- image: a windmill -->\r\rEnd.\r",
    "author-cover.md": '---\ntitle: Author cover\nimage: "https://example.org/mine.jpg"  # my own\n---\n\n<!-- image: a fox -->\n',
    "empty-cover.md": "---\ntitle: Empty cover\nimage:   # set by blogimg\n---\n\n<!-- image: a hare -->\n",
}


def test_write_back_of_awkward_posts_keeps_every_prompt(tmp_path: Path) -> None:
    posts, data = tmp_path / "posts", tmp_path / "data"
    posts.mkdir()
    for name, text in AWKWARD.items():
        (posts / name).write_bytes(text.encode())
    made = run_cli("generate", str(posts), data=data, cwd=tmp_path, **SMALL)
    assert made.returncode == 0, made.stdout + made.stderr

    first = run_cli("export", "--write-back", str(posts), data=data, cwd=tmp_path, **SMALL)
    assert first.returncode == 0, first.stdout + first.stderr
    out = " ".join(first.stdout.split())  # rich wraps long lines
    after = {name: (posts / name).read_bytes().decode() for name in AWKWARD}
    for name in ("mid-paragraph.md", "text-after.md", "code-span.md"):
        assert after[name] == AWKWARD[name], name
    assert "mid-paragraph.md: line 1: the image marker is not at the start of its line" in out
    assert "text-after.md: line 3: text follows the image marker on its line" in out
    assert "code-span.md: line 3: the image marker is not at the start of its line" in out

    toml = after["toml-post.md"]
    assert toml.startswith(AWKWARD["toml-post.md"].split("\n\n")[0] + "\n\n") and "image =" not in toml
    assert re.search(r"<!-- image: a garden at dawn -->\n<!-- blogimg:image id=\d+ --><picture>", toml)
    assert "toml-post.md: TOML front matter is left alone; set its image yourself:" in out

    quoted = after["quoted.md"]
    assert re.search(r"\n> <!-- image: a quiet harbour -->\n> <!-- blogimg:image id=\d+ -->[^\n]*\n\n- item", quoted)
    assert re.search(r"\n  <!-- image: a paper boat -->\n  <!-- blogimg:image id=\d+ -->[^\n]*\n\nLast", quoted)

    crlf_free = after["cr-only.md"]
    assert "\n" not in crlf_free and re.search(r"<!-- image: a windmill -->\r<!-- blogimg:image id=\d+ -->", crlf_free)
    assert "cr-only.md: front matter is not read with CR line endings" in out

    assert 'image: "https://example.org/mine.jpg"  # my own' in after["author-cover.md"]
    assert "author-cover.md: front matter's image is the author's" in out
    ours = re.search(r'^image: "(?P<url>[^"]+\.(?:jpe?g|png))"   # set by blogimg$', after["empty-cover.md"], re.MULTILINE)
    assert ours, after["empty-cover.md"]

    # A URL blogimg set before (under the storage's public address) is replaced by the current one.
    stale = ours.group("url").rsplit("/", 1)[0] + "/stale.png"
    (posts / "empty-cover.md").write_text(after["empty-cover.md"].replace(ours.group("url"), stale))
    second = run_cli("export", "--write-back", str(posts), data=data, cwd=tmp_path, **SMALL)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "write-back: 1 changed" in second.stdout
    assert {name: (posts / name).read_bytes().decode() for name in AWKWARD} == after

    third = run_cli("export", "--write-back", str(posts), data=data, cwd=tmp_path, **SMALL)
    assert "write-back: 0 changed" in third.stdout
    # Every post still asks for what it asked for: nothing new to pay for.
    again = run_cli("generate", str(posts), data=data, cwd=tmp_path, **SMALL)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr


def test_export_reads_a_catalogue_past_sqlites_variable_limit(site: Path, tmp_path: Path) -> None:
    """More succeeded images than SQLite takes bound variables (32766 by default, 250000 as Debian builds
    it): each post is read by its id, and only each prompt's newest image."""
    data = tmp_path / "data"
    shutil.copytree(site / "data", data)
    columns = [name for (name,) in query(data / "blogimg.db", "SELECT name FROM pragma_table_info('generated_images')")
               if name not in {"id", "variation"}]
    (image_id, prompt_id, slug), = query(data / "blogimg.db", "SELECT g.id, g.prompt_id, p.slug FROM generated_images g "
                                         "JOIN blog_posts p ON p.id = g.post_id JOIN image_prompts r ON r.id = g.prompt_id "
                                         "WHERE g.status = 'succeeded' AND r.kind = 'inline' LIMIT 1")
    listed = ", ".join(columns)
    query(data / "blogimg.db", f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 250001) "
                               f"INSERT INTO generated_images (variation, {listed}) SELECT 1000 + i, {listed} "
                               "FROM generated_images, n WHERE id = ?", image_id)
    result = run_cli("export", "--format", "json", str(tmp_path / "out"), data=data, cwd=tmp_path, **SMALL)
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((tmp_path / "out" / f"{slug}.json").read_text())
    newest, = query(data / "blogimg.db", "SELECT max(id) FROM generated_images WHERE prompt_id = ?", prompt_id)
    assert newest[0] in {image["id"] for image in manifest["images"]}  # the newest copy stands for its prompt
