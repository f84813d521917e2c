"""DHCPv4 for attachments: a codec (`packet`) and a client without I/O (`client`).

The supervisor takes an attachment's address from its NI's dnsmasq with these
(the sockets live in runner/drivers/dhcp.py), so the lease is real: the name
resolves in the NI's DNS and the app shows in `status` as any other.
"""
