"""The ``egain`` command line."""
