"""One reader per docs format (markdown.py, rst.py, html.py, openapi.py, ...); each turns a file's
text into markdown-style text (or Documents). rag/ingest.py picks the reader by file suffix."""
