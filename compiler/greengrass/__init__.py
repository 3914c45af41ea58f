"""Greengrass components: the bundle and recipe a job writes, where artifacts go, the agent component."""
