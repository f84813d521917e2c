"""`nirunner install`: the systemd unit, a default config and the shell completions."""
