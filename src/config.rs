//! Configuration: embedded defaults, an optional TOML file, command-line overrides.
