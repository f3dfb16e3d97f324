"""cirlib: the small tested library behind the Composed Image Retrieval book.

Chapters import from here; nothing a chapter needs twice lives in a notebook.
"""

__version__ = "0.1.0"
