"""Posts that hang or explode (issue 11): odd files, quadratic markdown, YAML bombs.

Each case runs in a child process with a deadline and a memory cap (tests/hostile.py), so that
where the code is wrong the test fails in seconds instead of hanging or filling the machine.
The child prints one line: ``ok …`` or ``ErrorName: message``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from blogimg.errors import InputError
from blogimg.pipeline.generate import read_posts
from blogimg.prompts.extract import PromptExtractor, read_post_file
from tests.hostile import Outcome, run_bounded

pytestmark = pytest.mark.timeout(120)
MAX_MARKERS = 100  #: blogimg.prompts.extract.MAX_MARKERS, spelt out so this module loads on code without it

_READ_FILE = """
    import sys
    from pathlib import Path
    from blogimg.prompts.extract import PromptExtractor, read_post_file
    try:
        post = read_post_file(Path(sys.argv[1] if len(sys.argv) > 1 else {path!r}), PromptExtractor())
        print("ok", len(post.prompts))
    except Exception as error:
        print(f"{{type(error).__name__}}: {{error}}")
"""

_EXTRACT = """
    from blogimg.prompts.extract import PromptExtractor
    text = {text}
    try:
        post = PromptExtractor(section_images={sections}, max_section_images=50).extract(text)
        print("ok", len(post.prompts))
    except Exception as error:
        print(f"{{type(error).__name__}}: {{str(error)[:300]}}")
"""


def read_in_child(path: Path, seconds: float = 20) -> Outcome:
    return run_bounded(_READ_FILE.format(path=str(path)), seconds=seconds)


def extract_in_child(text_expression: str, *, seconds: float = 30, sections: bool = False) -> Outcome:
    return run_bounded(_EXTRACT.format(text=text_expression, sections=sections), seconds=seconds)


def said(outcome: Outcome) -> str:
    assert not outcome.timed_out and outcome.returncode == 0, outcome.describe()
    return outcome.stdout.strip()


# --- files that are not files -------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="named pipes are POSIX")
def test_a_named_pipe_called_x_md_is_refused_at_once(tmp_path: Path) -> None:
    pipe = tmp_path / "x.md"
    os.mkfifo(pipe)
    outcome = read_in_child(pipe)
    assert said(outcome) == f"InputError: {pipe}: is a named pipe (FIFO), not a regular file; " \
                            "blogimg reads posts only from regular files"
    assert outcome.seconds < 10


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_character_device_called_x_md_is_refused_before_it_is_read(tmp_path: Path) -> None:
    device = tmp_path / "x.md"
    device.symlink_to("/dev/zero")  # endless: read whole, it takes every byte of memory there is
    outcome = read_in_child(device)
    assert said(outcome).startswith(f"InputError: {device}: is a character device, not a regular file")
    assert outcome.seconds < 10


def test_a_sparse_8_gb_file_is_refused_by_its_size_not_by_reading_it(tmp_path: Path) -> None:
    sparse = tmp_path / "huge.md"
    with sparse.open("wb") as file:
        file.truncate(8 << 30)  # 8 GB of nothing: no disk used, but read whole it is 8 GB of memory
    outcome = read_in_child(sparse)
    assert said(outcome) == f"PostParseError: {sparse}: larger than 5 MB; is it a post?"
    assert outcome.seconds < 10


def test_a_file_larger_than_its_size_said_is_read_only_up_to_the_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A file that grows between the size check and the read: stat says small, the bytes say not.
    from blogimg.prompts import post_file

    grown = tmp_path / "grown.md"
    grown.write_bytes(b"a" * 200)
    reads: list[int] = []

    def small(status: os.stat_result) -> os.stat_result:
        fields = list(status)
        fields[6] = 10  # st_size
        return os.stat_result(fields)

    def counting_read(descriptor: int, count: int) -> bytes:
        reads.append(count)
        return os.read(descriptor, count)

    monkeypatch.setattr(post_file, "os", SimpleNamespace(
        open=os.open, close=os.close, read=counting_read,
        stat=lambda path: small(os.stat(path)), fstat=lambda descriptor: small(os.fstat(descriptor))))
    with pytest.raises(post_file.PostParseError, match="larger than"):
        post_file.read_post_bytes(grown, limit=100)
    assert sum(reads) <= 101


@pytest.mark.skipif(sys.platform == "win32", reason="named pipes are POSIX")
def test_a_folder_of_posts_names_the_pipe_among_them_and_never_blocks(tmp_path: Path) -> None:
    from blogimg.config import Settings

    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "a.md").write_text("---\ntitle: A\n---\nText.\n")
    os.mkfifo(posts / "b.md")
    (posts / "notes.md").mkdir()  # a folder named like a post is walked into, not read
    (posts / "notes.md" / "c.md").write_text("Text.\n")
    with pytest.raises(InputError, match=r"b\.md: is a named pipe \(FIFO\), not a regular file"):
        read_posts([posts], Settings(database_url="sqlite+aiosqlite:///:memory:"))
    os.unlink(posts / "b.md")
    assert {post.slug for post in read_posts([posts], Settings(database_url="sqlite+aiosqlite:///:memory:"))} \
        == {"a", "c"}


# --- markdown that costs the square of its length -----------------------------------------------


@pytest.mark.parametrize(("text", "prompts"), [
    # 4 MB of unclosed markers, one per line: before, each was retried to the end of the post.
    ('"<!-- image: a\\n" * 300_000', 1),  # only the cover: an unclosed marker asks for nothing
    ('"<!-- image: a " * 300_000', 1),
], ids=["one per line", "all on one line"])
def test_unclosed_markers_cost_time_in_proportion_to_the_post(text: str, prompts: int) -> None:
    outcome = extract_in_child(text)
    assert said(outcome) == f"ok {prompts}"
    assert outcome.seconds < 15, outcome.describe()


def test_a_hundred_thousand_markers_on_one_line_are_refused_quickly_past_the_cap() -> None:
    outcome = extract_in_child('"<!-- image: a -->" * 100_000')
    assert said(outcome) == (f"PostParseError: <post>: more than {MAX_MARKERS} image markers; "
                             f"blogimg makes at most {MAX_MARKERS} inline images per post")
    assert outcome.seconds < 10, outcome.describe()


def test_many_section_headings_cost_time_in_proportion_to_the_post() -> None:
    # Section images looked for each heading's first text in a copy of every later token.
    outcome = extract_in_child('"## h\\n" * 100_000', sections=True)
    assert said(outcome) == "ok 51"  # the cover and the 50 sections allowed
    assert outcome.seconds < 20, outcome.describe()


def test_the_cap_counts_markers_and_the_last_line_numbers_stay_right() -> None:
    extractor = PromptExtractor()
    text = "Intro.\n\n" + "".join(f"<!-- image: picture {n} -->\n" for n in range(MAX_MARKERS))
    inline = extractor.extract(text).prompts[1:]
    assert len(inline) == MAX_MARKERS and inline[-1].line == 2 + MAX_MARKERS
    one_block = "<div>\n" + "\n".join(f"<!-- image: p {n} -->" for n in range(3)) + "\n</div>\n"
    assert [p.line for p in extractor.extract(one_block).prompts[1:]] == [2, 3, 4]
    with pytest.raises(InputError, match=f"more than {MAX_MARKERS} image markers"):
        extractor.extract(text + "<!-- image: one too many -->\n")


# --- front matter -------------------------------------------------------------------------------

LAUGHS = "\n".join(
    [
        "---",
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(f"{name}: &{name} [{','.join(['*' + previous] * 9)}]"
          for previous, name in zip("abcdefgh", "bcdefghi", strict=True)),
        "{field}: *i",
        "---",
        "Body.",
    ]
)


@pytest.mark.parametrize("field", ["title", "tags"])
def test_a_billion_laughs_in_front_matter_is_refused_in_a_moment(field: str) -> None:
    bomb = LAUGHS.format(field=field)
    assert len(bomb) < 700  # some 600 bytes that stand for 9^9 strings
    outcome = extract_in_child(repr(bomb))
    assert said(outcome) == ("PostParseError: <post>: front matter uses YAML aliases (&/*), "
                             "which blogimg does not accept; write each value out")
    assert outcome.seconds < 10, outcome.describe()


DEEP = "PostParseError: <post>: front matter nests lists or mappings more than 32 levels deep"
LONG = "PostParseError: <post>: front matter is longer than 64 KB; keep long text in the post's body"


@pytest.mark.parametrize(("nesting", "message"), [
    ('"[" * 20_000', DEEP), ('"{a: " * 10_000', DEEP), ('"- " * 20_000 + "x"', DEEP),
    ('"[" * 100_000', LONG),  # a hundred thousand deep is past the size limit first
])
def test_front_matter_nested_thousands_deep_is_one_clear_error(nesting: str, message: str) -> None:
    outcome = extract_in_child(f'"---\\n" + {nesting} + "\\n---\\nBody.\\n"')
    assert said(outcome) == message
    assert outcome.seconds < 10, outcome.describe()


@pytest.mark.parametrize(("front", "message"), [
    ("title: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[x]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
     "front matter nests lists or mappings more than 32 levels deep"),
    ("title: T\nsummary: " + "x" * 70_000, "front matter is longer than 64 KB"),
    ("title: " + "7" * 5000, "front matter holds an integer written with more than 1000 characters"),
    ("date: 0000-01-01", "front matter holds a value that cannot be read: year 0 is out of range"),
])
def test_front_matter_beyond_what_a_post_needs_is_one_clear_error(front: str, message: str) -> None:
    with pytest.raises(InputError, match=rf"^<post>: {message}"):
        PromptExtractor().extract(f"---\n{front}\n---\nBody.\n")
    # Anchors alone are harmless, and front matter within the limits reads as before.
    post = PromptExtractor().extract("---\ntitle: &t Anchored\ntags: [a, {b: [c]}]\n---\nBody.\n")
    assert post.title == "Anchored"


HUGE_INTEGER = ("PostParseError: <post>: front matter holds an integer written with more than 1000 characters; "
                "put it in quotes if it is text")


@pytest.mark.parametrize("front", [
    "title: " + ":".join(["1"] * 20_000),  # YAML 1.1 base 60: 40 KB that load as some 35,000 digits
    "title: 0x" + "f" * 60_000, "title: 0" + "7" * 60_000, "title: 0b" + "1" * 60_000,  # bases str() has no limit in
    'title: !!int "0x' + "f" * 60_000 + '"',  # tagged, not resolved: the same constructor
    "tags: [a, " + ":".join(["1"] * 20_000) + "]",
], ids=["sexagesimal", "hex", "octal", "binary", "tagged", "in tags"])
def test_an_integer_too_long_to_be_text_is_refused_as_it_is_read(front: str) -> None:
    # Before, it loaded (in up to 0.2 s) and str() on it raised ValueError: a 500 from the API.
    outcome = extract_in_child(repr(f"---\n{front}\n---\nBody.\n"))
    assert said(outcome) == HUGE_INTEGER
    assert outcome.seconds < 10, outcome.describe()


def test_integers_of_every_base_up_to_the_limit_still_read() -> None:
    extractor = PromptExtractor()
    for front, title in [("1:30:00", "5400"), ("0x1F", "31"), ("017", "15"), ("0b101", "5"), ("1_000", "1000"),
                         ("9" * 1000, "9" * 1000), ("0x" + "f" * 998, str(int("f" * 998, 16)))]:
        assert extractor.extract(f"---\ntitle: {front}\n---\nBody.\n").title == title


def test_front_matter_of_a_real_post_still_reads(tmp_path: Path) -> None:
    post_path = tmp_path / "trip.md"
    post_path.write_text("---\ntitle: Trip\ntags: [x, y]\ndate: 2024-05-01\n---\n<!-- image: a map -->\n")
    post = read_post_file(post_path, PromptExtractor())
    assert post.title == "Trip" and post.tags == ("x", "y") and len(post.prompts) == 2
    # And a post given by a path that is a folder is refused by name, not read.
    with pytest.raises(InputError, match=r"is a directory, not a regular file"):
        read_post_file(_folder(tmp_path / "folder.md"), PromptExtractor())


def _folder(path: Path) -> Path:
    path.mkdir()
    return path
