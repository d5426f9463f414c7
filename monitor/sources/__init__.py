"""Sources: one pure parser per page format, ``parse(bytes) -> list[Paper]``, chosen by content."""
