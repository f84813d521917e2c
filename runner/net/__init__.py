"""Kernel-visible names and values (a leaf: plan, render and drivers use it, it uses none).

`names` knows every name and number nirunner gives kernel objects; `routing`
holds routes and ip rules as values; `rules` the firewall/NAT intent that
`runner.render.nft` turns into text.
"""
