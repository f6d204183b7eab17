"""The bottom layer: configuration, database, errors, events, identity and crypto."""
