"""Bluetooth LE transports: the sans-IO link, the byte stream, the radios."""
