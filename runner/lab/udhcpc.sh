#!/bin/sh
# udhcpc event script for lab apps: configure the lease on the interface and
# print it as one line: lease IP/MASK key=value... (values "none" when absent).
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    echo "lease $ip/${mask:-24} router=${router:-none} dns=${dns:-none}" \
      "mtu=${mtu:-none} ntp=${ntpsrv:-none} domain=${domain:-none}"
    ;;
esac
exit 0
