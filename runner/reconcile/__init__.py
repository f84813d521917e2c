"""The item reconciler: intended state as small items, a pure diff, one engine.

    items   Item, Change: what every item is (id, dependencies, equality)
    kinds   the item kinds nirunner owns (netns, veth, bridge, routes, nft table, task, ...)
    build   plan -> intended items (pure)
    diff    diff(current, intended) -> ordered ops (pure)
    engine  runs ops through per-kind configurators, rolls an apply back on any error
    report  op log -> per-NI results, dry-run lines, events (pure)

Nothing here touches the kernel or containerd: configurators (runner.configurators)
do, and the engine only calls them.
"""
