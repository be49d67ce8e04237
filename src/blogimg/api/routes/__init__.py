"""Thin route handlers: validate, call the catalogue, shape the answer."""
