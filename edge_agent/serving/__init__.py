"""The gRPC face: the Unix-socket server, the servicer, the peer relay and request buffers."""
