"""Manifests and the supervisor's config, parsed into frozen, validated values."""
