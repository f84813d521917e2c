"""Prometheus metrics of the supervisor and its NIs (supervisor config `metrics`).

sample.py     what a scrape reads, outside the supervisor's lock, cached a few seconds
families.py   a sample as metric families (pure)
instruments.py  the supervisor's own counters: passes, ops, API calls, events
endpoint.py   the HTTP endpoint on 127.0.0.1:PORT or a Unix socket
wiring.py     start() and stop(): what serve() calls
"""
