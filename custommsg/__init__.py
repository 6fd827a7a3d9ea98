"""custommsg: safe, durable custom peer messages for Core Lightning.

The pure core (``wire``, ``guard``, ``policy``, ``paging``, ``store``, ``outbox``,
``waiters``) does no pyln I/O; ``shell`` binds it to lightningd.
"""

__version__ = "0.1.0"
