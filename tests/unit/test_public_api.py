"""The curated public API: complete, sorted, importable.

That importing reads no settings is shown in a fresh interpreter by
test_settings_and_database.py::test_importing_blogimg_reads_no_settings.
"""

import blogimg


def test_all_is_sorted_and_every_name_exists() -> None:
    assert blogimg.__all__ == sorted(blogimg.__all__)
    for name in blogimg.__all__:
        assert getattr(blogimg, name) is not None

