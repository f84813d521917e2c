"""Rendering of plan data into config text (pure): nft rulesets, dnsmasq config."""
