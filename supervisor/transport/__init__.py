"""Between the daemon and its instances: shared-memory rings, doorbells, fences, fd
passing and the wire format. Both sides import this; it imports neither."""
