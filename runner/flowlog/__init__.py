"""The app edge's observability: counters of the edge and ACL tables, and the flow log.

`counters` reads `nft -j` output; `netlink` decodes NETLINK_NETFILTER messages
(conntrack events, nflog packets); `dns` parses DNS replies; `records` turns
them into flow records; `writer` keeps them as size-capped, rotated JSON lines;
`collector` listens in an NI netns and ties it together.
"""
