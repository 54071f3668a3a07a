"""Configuration: the TOML file, its values and units, validated into :class:`Config`."""
