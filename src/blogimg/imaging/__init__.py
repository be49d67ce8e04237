"""Turning untrusted provider bytes into web-ready files."""

from blogimg.imaging.process import EncodedFile, ImagingOptions, ProcessedImage, process_image

__all__ = ["EncodedFile", "ImagingOptions", "ProcessedImage", "process_image"]
