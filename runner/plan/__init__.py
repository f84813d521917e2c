"""Planning: manifests + supervisor config + live facts -> what should exist (pure).

`site.build` is the entry point; `ni.plan_ni` and `device.plan_device` plan one
NI and the device netns; kernel names come from `runner.net.names`.
Nothing here does I/O: drivers read the live system into `facts.Facts`.
"""
