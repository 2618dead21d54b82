"""Patient/$everything: declaration, HTTP handlers and use case (one capability folder)."""
