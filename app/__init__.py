"""LlavaCam: ask a small local vision-language model about what your camera sees."""

__version__ = "0.1.0"
