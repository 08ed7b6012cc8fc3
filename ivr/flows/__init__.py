"""Call flows run by the FastAGI server (``ivr.server`` maps script names to them).

- ``hotline``: the ``loyalty`` script, the self-service menu (``Hotline``).
- ``speech`` / ``menu`` / ``answers`` / ``redeem``: its building blocks.
- ``calls``: per-call state shared between a flow and the server's call recorder.
"""
