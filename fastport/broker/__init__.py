"""The broker core: sessions, connections, routing and at-least-once delivery.

Nothing here imports picows or sockets; the server package adapts transports to
the ``Sink`` protocol of ``connection.py``.
"""
