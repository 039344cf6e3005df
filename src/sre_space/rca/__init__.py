"""Root-cause localisation from trace structure (one Brain for live and offline use)."""
