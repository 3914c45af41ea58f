"""A stand-in Greengrass nucleus: the IPC event-stream RPC server the real awsiotsdk client connects to."""
