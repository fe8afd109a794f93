"""One reader per docs format; each turns a file's text into markdown-style text (or Documents)."""
