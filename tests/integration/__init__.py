"""The parts together: CLI end to end, the example client, ARM64 under qemu, the agent component, benchmarks."""
