"""The packager–agent contract: the manifest, the verified bundle folder, and the rule for same outputs."""
