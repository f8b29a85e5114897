"""Sans-I/O layer of the fastPort wire protocol: frames, codec and topic rules.

Nothing in this package imports asyncio, picows, sockets or a clock.
"""
