"""Converters from the public zoos' distribution formats into this project's zoo format."""
