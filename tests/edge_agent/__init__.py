"""Tests of the Edge Agent: its units, its process and its gRPC API."""
