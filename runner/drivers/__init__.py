"""The only code with effects on the kernel: netns, links, routes, nft, files."""
