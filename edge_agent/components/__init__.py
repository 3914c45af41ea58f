"""Where the agent's model components come from: Greengrass registrations, the models folder, the watcher."""
