"""On-device agent: loads compiled model bundles and serves the Lookout for Vision Edge Agent API."""
