"""The I/O adapters: picows WebSockets and the REST API on one port. Only this package imports picows."""
