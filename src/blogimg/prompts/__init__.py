"""Reading posts and deciding which images they need."""

from blogimg.prompts.extract import PromptExtractor, extract_post, read_post_file

__all__ = ["PromptExtractor", "extract_post", "read_post_file"]
