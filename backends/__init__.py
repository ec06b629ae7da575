"""polybus's built-in backends. Each is a plugin registered through the ``bus``
entry-point group, exactly as a third-party backend is."""
