"""The curated public API: complete, sorted, importable."""

import blogimg


def test_all_is_sorted_and_every_name_exists() -> None:
    assert blogimg.__all__ == sorted(blogimg.__all__)
    for name in blogimg.__all__:
        assert getattr(blogimg, name) is not None


def test_settings_are_not_built_at_import() -> None:
    import importlib
    import os

    os.environ["BLOGIMG_MAX_CONCURRENT"] = "not a number"
    try:
        importlib.reload(blogimg)  # importing must not read or validate settings
    finally:
        del os.environ["BLOGIMG_MAX_CONCURRENT"]
