"""Memory: knowledge tuples with verified outcomes in Chroma, embedded offline."""
