"""Building and checking the plugin's binary wheel (``make wheel``)."""
